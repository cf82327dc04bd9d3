"""The plugin registry: entry points, isolation of broken plugins, clear errors.

Torch-free: the engines registered here are unillm.testing.fake's pure-Python `FakeEngine`
(what the transformers engine itself does at load is tested in tests/engines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import unillm
from unillm.registry import Registry
from unillm.testing.fake import FakeEngine


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
    that raises while registering, and one that works (the pure-Python fake engine under a
    new name)."""
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
            from unillm.testing.fake import FakeEngine

            class ThirdPartyEngine(FakeEngine):
                pass

            @unillm.hookimpl
            def unillm_register_engines(register):
                register("thirdparty", ThirdPartyEngine, requires=("hashlib",),
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
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_broken_plugins_are_listed_and_harm_no_other(plugin_site):
    result = _run_with_plugins(plugin_site, """
        import importlib.util, json, unillm
        from unillm.testing.fake import FakeEngine
        infos = {i.name: i for i in unillm.engines()}
        params = unillm.SamplingParams(max_tokens=3, temperature=0)
        out = unillm.load("thirdparty", "fake").generate("Hello", params)
        ref = unillm.Generator(FakeEngine(), engine_name="fake", model="fake").generate(
            "Hello", params)
        has_torch = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
        print(json.dumps({
            "status": {k: v.status for k, v in infos.items()},
            "errors": {k: v.error for k, v in infos.items()},
            "same": out.token_ids == ref.token_ids and out.engine == "thirdparty",
            "transformers": "installed" if has_torch else "missing",
        }))
    """)
    status, errors = result["status"], result["errors"]
    assert status["unillm-broken-import"] == "broken"
    assert "deliberately broken" in errors["unillm-broken-import"]
    assert status["unillm-broken-register"] == "broken"
    assert "registration deliberately fails" in errors["unillm-broken-register"]
    assert status["transformers"] == result["transformers"]  # as if the broken ones were absent
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
            register("fake-alias-test", FakeEngine, aliases=("fat",),
                     defaults={"eos_odds": 0.5})

    class Conflicting:
        @unillm.hookimpl
        def unillm_register_engines(self, register):
            register("transformers", FakeEngine)

    reg = Registry()
    reg.add_plugin(Plugin(), name="alias-test")
    reg.add_plugin(Conflicting(), name="conflicting")
    assert reg.get("fat").name == "fake-alias-test"
    assert reg.get("fat").defaults == {"eos_odds": 0.5}
    broken = {i.name: i for i in reg.engines() if i.status == "broken"}
    assert "already registered" in broken["conflicting"].error


class _FakeEngines:
    """The fake engine as `fake-registry-test`, and one whose model must hold a weights file."""

    @unillm.hookimpl
    def unillm_register_engines(self, register):
        register("fake-registry-test", FakeEngine)
        register("fake-needs-weights", _NeedsWeights)


class _NeedsWeights(FakeEngine):
    def __init__(self, model, options):
        super().__init__(model, options)
        (Path(model) / "weights.bin").read_bytes()  # an engine library's own error


@pytest.fixture(scope="module")
def fake_engines() -> None:
    if "fake-registry-test" not in {i.name for i in unillm.engines()}:
        unillm.register_plugin(_FakeEngines(), name="test-registry-fakes")


def test_engine_options_are_validated_with_named_errors(fake_engines):
    with pytest.raises(unillm.UnknownParameterError, match="eos_odd.*Did you mean 'eos_odds'"):
        unillm.load("fake-registry-test", "fake", eos_odd=0.1)
    with pytest.raises(unillm.InvalidParameterError,
                       match="fake-registry-test engine option.eos_odds"):
        unillm.load("fake-registry-test", "fake", eos_odds=2.0)


def test_load_failure_is_an_engine_error(fake_engines, tmp_path):
    """A directory that exists but holds no model fails inside the engine: an EngineError
    naming the engine and the library's error. (A path that does not exist is refused before
    any engine runs: test_model_source.py.)"""
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    with pytest.raises(unillm.EngineError, match="could not load.*FileNotFoundError") as info:
        unillm.load("fake-needs-weights", str(empty))
    assert info.value.engine == "fake-needs-weights"
