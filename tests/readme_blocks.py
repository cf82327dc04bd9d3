"""Running a Markdown page's code blocks as a newcomer would, in order.

tests/test_readme.py uses this on README.md and docs/index.md so that what they show cannot
drift from what works. A newcomer copies each command into a terminal and each Python block
into a file; this does the same, with the few substitutions that a test has to make, all of
them listed in `SUBSTITUTIONS` (and nothing else is changed):

- ``bash scripts/demo.sh`` sets up ``.venv`` and then runs ``unillm demo``. The test already
  runs inside the environment CI set up (``scripts/setup.sh all``), so it runs
  ``python -m unillm demo``; that the demo's set-up installs the extras the page's later commands
  need is checked separately, from ``scripts/setup.sh demo --print-extras``.
- ``source .venv/bin/activate`` puts the environment's ``bin`` first on PATH: the runner runs
  every command with the test interpreter's ``bin`` first on PATH instead.
- ``unillm serve ...`` runs until Ctrl-C; a newcomer runs it in another terminal. The runner
  starts it in the background on a free port (``--port N`` added), waits for ``/health``, points
  later blocks' ``127.0.0.1:8000`` at that port, and stops it when the page is done.
- A command identical to one already run (comments aside) is not run twice (the demo is on
  both pages).

Every other command runs verbatim through bash, in a scratch directory (the tools write their
result files into the working directory), and must exit 0 within `COMMAND_TIMEOUT` seconds.
Each Python block runs as its own program and must exit 0 too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port, stop_process, wait_until_ready

SHELL_LANGS = {"bash", "sh", "shell"}
PYTHON_LANGS = {"python", "py"}
COMMAND_TIMEOUT = 600  # seconds; the README's commands are sized to take a minute or two
SERVER_READY_TIMEOUT = 180
DEFAULT_PORT = 8000

SUBSTITUTIONS = {
    "bash scripts/demo.sh": "python -m unillm demo (set-up already done by CI; extras checked apart)",
    "source .venv/bin/activate": "the test interpreter's bin first on PATH",
    "unillm serve ...": "started in the background with --port <free>, stopped at the end",
    "127.0.0.1:8000": "127.0.0.1:<that free port>, once a server was started",
}

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def extract(path: Path) -> list[Block]:
    """Every fenced block of `path` whose language is a shell or Python, in page order."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in _FENCE.finditer(text):
        lang = m.group(1).lower()
        if lang in SHELL_LANGS | PYTHON_LANGS:
            line = text.count("\n", 0, m.start()) + 2  # the block's first code line
            blocks.append(Block(path, line, "python" if lang in PYTHON_LANGS else "bash",
                                m.group(2)))
    return blocks


def commands(code: str) -> Iterator[str]:
    """The commands of a shell block: one per line (``\\`` continues a line), comment-only and
    blank lines left out. Trailing comments stay: bash ignores them."""
    pending = ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            yield line
    if pending.strip():
        yield pending.strip()


def words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def is_server(command: str) -> bool:
    return words(command)[:2] == ["unillm", "serve"]


@dataclass
class Runner:
    """Runs blocks in order in `workdir`, keeping what later blocks depend on (the server)."""

    workdir: Path
    log: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen] = field(default_factory=list)
    port: int | None = None
    _done: set[tuple[str, ...]] = field(default_factory=set)

    def env(self) -> dict[str, str]:
        bindir = str(Path(sys.executable).parent)
        return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
                "COLUMNS": "100", "PYTHONUNBUFFERED": "1"}

    def localise(self, text: str) -> str:
        if self.port is None:
            return text
        return text.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{self.port}")

    def run_block(self, block: Block) -> None:
        if block.lang == "python":
            self._python(block)
        else:
            for command in commands(block.code):
                self._shell(block, command)

    def _shell(self, block: Block, command: str) -> None:
        argv = words(command)
        if tuple(argv) in self._done:  # the same words; a trailing comment may differ
            self.log.append(f"{block.where}: {command}  [already run]")
            return
        self._done.add(tuple(argv))
        if argv[:2] == ["bash", "scripts/demo.sh"]:
            command = f"{shlex.quote(sys.executable)} -m unillm demo"
        elif argv[:1] == ["source"] and argv[1:2] == [".venv/bin/activate"]:
            self.log.append(f"{block.where}: {command}  [PATH set by the test]")
            return
        elif is_server(command):
            self._start_server(block, command)
            return
        self._check(block, command, subprocess.run(
            ["bash", "-c", self.localise(command)], cwd=self.workdir, env=self.env(),
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT))

    def _python(self, block: Block) -> None:
        script = self.workdir / f"block_{block.path.stem}_{block.line}.py"
        script.write_text(self.localise(block.code), encoding="utf-8")
        self._check(block, f"python {script.name}", subprocess.run(
            [sys.executable, str(script)], cwd=self.workdir, env=self.env(),
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT))

    def _check(self, block: Block, what: str, out: subprocess.CompletedProcess) -> None:
        self.log.append(f"{block.where}: {what}  [exit {out.returncode}]")
        if out.returncode != 0:
            raise AssertionError(
                f"{block.where}: `{what}` exited {out.returncode}\n"
                f"--- stdout (end)\n{out.stdout[-3000:]}\n--- stderr (end)\n{out.stderr[-3000:]}")

    def _start_server(self, block: Block, command: str) -> None:
        self.port = free_port()
        argv = words(command)
        if "--port" not in argv:
            argv += ["--port", str(self.port)]
        log_path = self.workdir / f"server_{block.line}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(argv, cwd=self.workdir, env=self.env(), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append(proc)
        try:
            wait_until_ready(f"http://127.0.0.1:{self.port}/health", SERVER_READY_TIMEOUT,
                             alive=lambda: proc.poll() is None)
        except BaseException as exc:
            raise AssertionError(f"{block.where}: `{command}` did not become ready: {exc}\n"
                                 f"{log_path.read_text()[-3000:]}") from None
        self.log.append(f"{block.where}: {command}  [serving on port {self.port}]")

    def close(self) -> None:
        while self.servers:
            stop_process(self.servers.pop())
