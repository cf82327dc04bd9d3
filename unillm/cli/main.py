"""The `unillm` command: engines, generate, demo, build-model (and the tools' subcommands)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .messages import fail
from .options import parse_pairs

# rich_markup_mode=None: click's plain help, which wraps descriptions and never cuts an option
# name (rich's option tables at 80 columns printed "--served-model-…", "--max-batch-wai…"), and
# usage errors printed as plain text, brackets and all. max_content_width: use a wide
# terminal's width instead of click's 80-column cap.
app = typer.Typer(
    name="unillm", help="One interface for every LLM inference engine.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None, context_settings={"max_content_width": 120},
)
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        import unillm

        print(f"unillm {unillm.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")] = False,
) -> None:
    """One interface for every LLM inference engine."""


@app.command()
def engines() -> None:
    """List every engine: installed, missing (with the install command) or broken."""
    from rich.markup import escape

    import unillm

    table = Table(title="unillm engines")
    table.add_column("engine", style="bold")
    table.add_column("status")
    table.add_column("plugin")
    table.add_column("details")
    colours = {"installed": "green", "missing": "yellow", "broken": "red"}
    for info in unillm.engines():
        detail = info.description if info.status == "installed" else (info.error or "")
        if info.status == "missing" and info.install_hint:
            detail += f"\ninstall: {info.install_hint}"
        # escape: install hints hold "unillm[extra]", which rich would read as markup
        table.add_row(info.name, f"[{colours[info.status]}]{info.status}[/]", escape(info.plugin),
                      escape(detail))
    Console().print(table)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="the prompt text")],
    engine: Annotated[str, typer.Option("--engine", "-e", help="engine name")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="model path, hub id, or test:PRESET (HTTP engines: the server's "
        "model name, or leave out)")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="SamplingParams field, key=value")] = [],  # noqa: B006
    option: Annotated[list[str], typer.Option("--option", "-o", help="engine option, key=value")] = [],  # noqa: B006
    chat: Annotated[bool, typer.Option(help="send the prompt as a user message via the chat template")] = False,
) -> None:
    """Stream a completion to stdout, then print its timing to stderr.

    With ``-p n=N`` the first sample streams as it is generated and every other sample follows,
    each under a ``--- sample i of N ---`` header (on stderr, so stdout holds only the texts).
    """
    import unillm

    from .models import resolve_cli_model

    try:
        params = unillm.SamplingParams(**parse_pairs(param, "--param"))
        model_arg = resolve_cli_model(model) if model is not None else None
        with unillm.load(engine, model_arg, **parse_pairs(option, "--option")) as gen:
            stream = (gen.stream_chat([{"role": "user", "content": prompt}], params) if chat
                      else gen.stream(prompt, params))
            if params.n > 1:
                _header(0, params.n)
            for chunk in stream:
                if chunk.index == 0:
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
            sys.stdout.write("\n")
    except unillm.UnillmError as exc:
        raise fail(exc) from None
    c = stream.completion
    for i, sample in enumerate(c.samples[1:], start=1):
        sys.stdout.flush()
        _header(i, len(c.samples))
        sys.stdout.write(sample.text + "\n")
    sys.stdout.flush()
    for i, sample in enumerate(c.samples):
        t = sample.timing
        table = Table(show_header=False, box=None,
                      title=f"sample {i + 1} of {len(c.samples)}" if len(c.samples) > 1 else None)
        for label, value in [
            ("finish_reason", sample.finish_reason),
            ("prompt_tokens", t.prompt_tokens),
            ("output_tokens", t.output_tokens),
            ("ttft", _ms(t.ttft)),
            ("tpot", _ms(t.tpot)),
            ("e2e", _ms(t.e2e)),
            ("tokens/s", f"{t.tokens_per_s:.1f}" if t.tokens_per_s else "-"),
        ]:
            table.add_row(label, str(value))
        err.print(table)


def _header(index: int, total: int) -> None:
    sys.stdout.flush()
    err.print(f"--- sample {index + 1} of {total} ---", highlight=False, markup=False)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


@app.command("build-model")
def build_model(
    preset: Annotated[str, typer.Argument(help="llama-tiny, gpt2-tiny, qwen2-tiny, llama-quant, llama-small")] = "llama-tiny",
    dtype: Annotated[str, typer.Option(help="float32, float16 or bfloat16")] = "float32",
) -> None:
    """Build (or reuse) a local test model and print its directory."""
    from unillm.testing import build_test_model

    from .models import check_preset

    check_preset(preset)
    with err.status(f"building {preset} ({dtype})"):
        path = build_test_model(preset, dtype=dtype)
    print(path)


@app.command()
def demo(
    preset: Annotated[str, typer.Option(help="test model preset")] = "llama-tiny",
    max_tokens: Annotated[int, typer.Option(help="tokens per prompt")] = 32,
    repeats: Annotated[int, typer.Option(
        min=1, help="runs per engine; the table shows the median and the spread")] = 3,
) -> None:
    """Build a test model, run it on every installed local engine, print a timing table."""
    from .demo import run_demo
    from .models import check_preset

    check_preset(preset, given=f"--preset {preset}")
    raise typer.Exit(run_demo(preset, max_tokens, repeats))


def _register_tool_commands() -> None:
    """Subcommands of the tools built on the core (serve, bench, tune, eval, recommend), when
    present."""
    import importlib

    for module, name in (("unillm.cli.serve", "serve"), ("unillm.cli.bench", "bench"),
                         ("unillm.cli.tune", "tune"), ("unillm.cli.eval", "eval"),
                         ("unillm.cli.recommend", "recommend")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


_register_tool_commands()


def main() -> None:
    app()
