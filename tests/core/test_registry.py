"""The plugin registry: entry points, isolation of broken plugins, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import unillm
from unillm.backends.transformers import TransformersEngine
from unillm.registry import Registry


def _plugin_package(root: Path, dist: str, module: str, body: str) -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / module / "__init__.py").write_text(textwrap.dedent(body))
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "0.0.1"

        [project.entry-points.unillm]
        {dist} = "{module}"

        [tool.setuptools]
        packages = ["{module}"]
    """))
    return pkg


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A directory with three pip-installed plugin packages: one that fails to import, one
    that raises while registering, and one that works (a real engine under a new name)."""
    root = tmp_path_factory.mktemp("plugins")
    site = root / "site"
    packages = [
        _plugin_package(root, "unillm-broken-import", "broken_import", """
            raise ImportError("this plugin is deliberately broken")
        """),
        _plugin_package(root, "unillm-broken-register", "broken_register", """
            import unillm

            @unillm.hookimpl
            def unillm_register_engines(register):
                raise RuntimeError("registration deliberately fails")
        """),
        _plugin_package(root, "unillm-good", "good_plugin", """
            import unillm
            from unillm.backends.transformers import TransformersEngine

            class ThirdPartyEngine(TransformersEngine):
                pass

            @unillm.hookimpl
            def unillm_register_engines(register):
                register("thirdparty", ThirdPartyEngine, requires=("torch",),
                         description="a third-party engine")
                register("needs-missing-lib", ThirdPartyEngine, requires=("no_such_lib_xyz",),
                         extra="nosuch")
        """),
    ]
    for pkg in packages:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--target", str(site), str(pkg)],
            check=True, capture_output=True,
        )
    return site


def _run_with_plugins(site: Path, code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_broken_plugins_are_listed_and_harm_no_other(plugin_site, tiny_llama):
    result = _run_with_plugins(plugin_site, f"""
        import json, unillm
        infos = {{i.name: i for i in unillm.engines()}}
        gen = unillm.load("thirdparty", {tiny_llama!r}, dtype="float32")
        out = gen.generate("Hello", unillm.SamplingParams(max_tokens=3, temperature=0))
        ref = unillm.load("transformers", {tiny_llama!r}, dtype="float32").generate(
            "Hello", unillm.SamplingParams(max_tokens=3, temperature=0))
        print(json.dumps({{
            "status": {{k: v.status for k, v in infos.items()}},
            "errors": {{k: v.error for k, v in infos.items()}},
            "same": out.token_ids == ref.token_ids,
        }}))
    """)
    status, errors = result["status"], result["errors"]
    assert status["unillm-broken-import"] == "broken"
    assert "deliberately broken" in errors["unillm-broken-import"]
    assert status["unillm-broken-register"] == "broken"
    assert "registration deliberately fails" in errors["unillm-broken-register"]
    assert status["transformers"] == "installed"
    assert status["thirdparty"] == "installed"
    assert status["needs-missing-lib"] == "missing"
    assert result["same"]


def test_a_missing_library_gives_the_install_command(plugin_site):
    result = _run_with_plugins(plugin_site, """
        import json, unillm
        try:
            unillm.load("needs-missing-lib", "x")
        except unillm.EngineUnavailableError as exc:
            print(json.dumps({"msg": str(exc)}))
    """)
    assert 'pip install "unillm[nosuch]"' in result["msg"]
    assert "no_such_lib_xyz" in result["msg"]


def test_unknown_engine_lists_installed_and_known_engines():
    with pytest.raises(unillm.EngineNotFoundError) as info:
        unillm.load("no-such-engine", "model")
    msg = str(info.value)
    assert "no-such-engine" in msg and "transformers" in msg and "llamacpp" in msg


def test_known_external_plugin_not_installed_names_its_package():
    if any(i.name == "llamacpp" and i.status == "installed" for i in unillm.engines()):
        pytest.skip("the llamacpp plugin is installed here")
    with pytest.raises(unillm.EngineUnavailableError, match="unillm-llamacpp"):
        unillm.load("llamacpp", "model.gguf")


def test_builtin_engines_come_from_entry_points():
    reg = Registry()
    names = {i.name: i for i in reg.engines()}
    assert names["transformers"].plugin == "transformers"
    # Without entry points there is no built-in either: they register the same way.
    assert "transformers" not in {i.name for i in Registry(use_entry_points=False).engines()}


def test_programmatic_plugins_and_name_conflicts():
    class Plugin:
        @unillm.hookimpl
        def unillm_register_engines(self, register):
            register("transformers-alias-test", TransformersEngine, aliases=("tat",),
                     defaults={"dtype": "float32"})

    class Conflicting:
        @unillm.hookimpl
        def unillm_register_engines(self, register):
            register("transformers", TransformersEngine)

    reg = Registry()
    reg.add_plugin(Plugin(), name="alias-test")
    reg.add_plugin(Conflicting(), name="conflicting")
    assert reg.get("tat").name == "transformers-alias-test"
    assert reg.get("tat").defaults == {"dtype": "float32"}
    broken = {i.name: i for i in reg.engines() if i.status == "broken"}
    assert "already registered" in broken["conflicting"].error


def test_engine_options_are_validated_with_named_errors(tiny_llama):
    with pytest.raises(unillm.UnknownParameterError, match="dtyp.*Did you mean 'dtype'"):
        unillm.load("transformers", tiny_llama, dtyp="float32")
    with pytest.raises(unillm.InvalidParameterError, match="transformers engine option.dtype"):
        unillm.load("transformers", tiny_llama, dtype="float64")


def test_load_failure_is_an_engine_error(tmp_path):
    """A directory that exists but holds no model fails inside the engine: an EngineError.
    (A path that does not exist is refused before any engine runs: test_model_source.py.)"""
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    with pytest.raises(unillm.EngineError, match="could not load"):
        unillm.load("transformers", str(empty))
