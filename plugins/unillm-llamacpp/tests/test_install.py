"""The package installs into a fresh environment, is discovered, and uninstalls cleanly.

A real virtual environment is created and the plugin is pip-installed into it from a copy of its
source, exactly as a user would (`pip install ./plugins/unillm-llamacpp`). To stay fast and
offline, the fresh environment gets its dependencies (unillm, llama-cpp-python, gguf, numpy,
pip, setuptools...) from the environment running the test, through a `.pth` file pointing at a
directory of symbolic links to everything installed here *except this plugin*; so pip sees them
as installed, resolves the plugin's requirements against them with `--no-index`, builds the
plugin with the setuptools found there (`--no-build-isolation`), and installs only the plugin
into the new environment. Nothing is downloaded and llama-cpp-python is not rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_SOURCE = Path(__file__).resolve().parent.parent

STATUS = (
    "import json, unillm; "
    "print(json.dumps({i.name: [i.status, i.plugin, i.install_hint] for i in unillm.engines()}))"
)


def _is_plugin(name: str) -> bool:
    return "unillm_llamacpp" in name.replace("-", "_").lower()


def _underlay(into: Path) -> list[str]:
    """Symbolic links to the distributions installed beside llama-cpp-python, but the plugin.

    One site-packages directory is linked (the one holding llama_cpp), not every directory on
    sys.path, so that no two versions of a package (setuptools, wheel) get mixed. Returns the
    new environment's extra sys.path entries: the link directory, plus unillm's source
    directory when unillm is installed in editable mode (its code is reached through a .pth
    file, which a linked directory does not process)."""
    import importlib.util

    import unillm

    into.mkdir()
    base = Path(importlib.util.find_spec("llama_cpp").origin).resolve().parent.parent
    for child in sorted(base.iterdir()):
        if not (child.name.endswith(".pth") or _is_plugin(child.name)):
            (into / child.name).symlink_to(child)
    paths = [str(into)]
    if not (into / "unillm").exists():
        paths.append(str(Path(unillm.__file__).resolve().parent.parent))
    return paths


def _run(python: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONNOUSERSITE": "1", "PIP_NO_INDEX": "1", "COLUMNS": "200"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=env,
                          check=False, timeout=600, **kwargs)


def _engines(python: Path) -> dict:
    out = _run(python, "-c", STATUS)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_installs_into_a_fresh_environment_is_discovered_and_uninstalls_cleanly(
        tmp_path, gguf_file):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    (site / "_underlay.pth").write_text("\n".join(_underlay(tmp_path / "underlay")) + "\n")

    # Before: unillm knows the name and says how to install it.
    before = _engines(python)
    assert before["llamacpp"][0] == "missing"
    assert "plugins/unillm-llamacpp" in before["llamacpp"][2]
    assert before["transformers"][0] == "installed"

    source = tmp_path / "unillm-llamacpp"
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns(
        "*.egg-info", "build", "__pycache__", ".pytest_cache", "tests"))
    out = _run(python, "-m", "pip", "install", "--no-index", "--no-build-isolation",
               "--disable-pip-version-check", str(source))
    assert out.returncode == 0, out.stdout + out.stderr
    installed = sorted(p.name for p in site.iterdir() if _is_plugin(p.name))
    assert installed and all(name.startswith("unillm_llamacpp") for name in installed)

    # After: discovered through its entry point, and it runs from the new environment.
    after = _engines(python)
    assert after["llamacpp"][:2] == ["installed", "llamacpp"]
    cli = _run(python, "-m", "unillm.cli", "engines")
    assert cli.returncode == 0 and "llamacpp" in cli.stdout and "installed" in cli.stdout
    run = _run(python, "-c", (
        "import unillm, unillm_llamacpp; "
        f"gen = unillm.load('llamacpp', {gguf_file('llama-tiny', 'f32')!r}); "
        "out = gen.generate('Hello', unillm.SamplingParams(max_tokens=4, temperature=0)); "
        "print(unillm_llamacpp.__file__); print(out.timing.output_tokens)"))
    assert run.returncode == 0, run.stderr
    module_file, tokens = run.stdout.split()[-2:]
    assert module_file.startswith(str(site)) and tokens == "4"

    # Uninstalled: back to "missing" with the install hint, nothing broken, nothing left.
    out = _run(python, "-m", "pip", "uninstall", "-y", "unillm-llamacpp")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(p.name for p in site.iterdir() if _is_plugin(p.name)) == []
    # Exactly the state before installing: llamacpp "missing" with its install command (not
    # "broken"), every other engine as it was.
    assert _engines(python) == before
