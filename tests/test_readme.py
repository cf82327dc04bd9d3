"""The README path works end to end: every shell and Python block of README.md and
docs/index.md runs, in order, on the test model (tests/readme_blocks.py says how, and which few
substitutions a test has to make), and the demo's set-up installs what those commands need."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.readme_blocks import Block, Runner, commands, extract, words

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "index.md"]

# The extra each tool needs, for the set-up check below.
TOOL_EXTRAS = {("unillm", "serve"): "serve", ("unillm", "bench"): "bench", ("unillm", "tune"): "bench"}


def page_blocks() -> list[Block]:
    return [b for page in PAGES for b in extract(page)]


def test_the_pages_have_blocks_to_run():
    """An extraction that found nothing would make the end-to-end test pass vacuously."""
    blocks = page_blocks()
    assert {b.path.name for b in blocks} == {"README.md", "index.md"}
    assert any(b.lang == "python" for b in blocks) and any(b.lang == "bash" for b in blocks)
    assert any(c.startswith("unillm bench") for b in blocks for c in commands(b.code))


def test_commands_splits_lines_continuations_and_comments():
    code = "# set up\nbash x.sh   # trailing note\n\nunillm bench latency \\\n  -m test:llama-tiny\n"
    assert list(commands(code)) == ["bash x.sh   # trailing note",
                                    "unillm bench latency    -m test:llama-tiny"]


def test_extract_keeps_only_shell_and_python_in_page_order(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n```bash\necho 1\n```\n```json\n{}\n```\n```python\nprint(2)\n```\n")
    blocks = extract(page)
    assert [(b.lang, b.code, b.line) for b in blocks] == [("bash", "echo 1\n", 3),
                                                         ("python", "print(2)\n", 9)]


def test_demo_setup_installs_the_extras_the_pages_use():
    """After `bash scripts/demo.sh` (the README's first command) every later command must run:
    the demo profile has to install each extra a command on the pages needs."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "demo", "--print-extras"],
                         capture_output=True, text=True, check=True)
    installed = set(out.stdout.split())
    # The Python blocks load the transformers engine, and constrain its output (llguidance).
    needed = {"transformers", "structured"}
    for block in page_blocks():
        if block.lang == "bash":
            for command in commands(block.code):
                extra = TOOL_EXTRAS.get(tuple(words(command)[:2]))
                if extra:
                    needed.add(extra)
    assert needed <= installed, f"scripts/setup.sh demo does not install {needed - installed}"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_every_block_of_the_readme_and_quick_start_runs_in_order(tmp_path):
    runner = Runner(tmp_path)
    try:
        for block in page_blocks():
            runner.run_block(block)
    finally:
        runner.close()
        print("\n".join(runner.log))
    assert runner.port is not None, "the README starts `unillm serve`: it was not seen"
