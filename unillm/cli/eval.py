"""`unillm eval`: lm-evaluation-harness on any unillm engine, from the command line.

lm-eval's own command line finds no model types outside lm-eval, so this command registers
unillm's (`unillm.eval.UnillmLM`, model ``unillm``), adds unillm's shipped tasks to lm-eval's
task paths, and hands over to lm-eval's CLI: every lm-eval argument after unillm's own
(``--tasks``, ``--num_fewshot``, ``--limit``, ``--output_path``, ``--batch_size``, ...) means
what it means to ``lm-eval run``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from .messages import fail
from .options import parse_pairs


def eval_command(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option("--engine", "-e", help="engine name (unillm engines)")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="model path, hub id, or test:PRESET (HTTP engines: the server's "
        "model name, or leave out)")] = None,
    engine_option: Annotated[list[str], typer.Option(
        "--engine-option", "-o", help="engine option, key=value (repeatable)")] = [],  # noqa: B006
) -> None:
    """Evaluate a model with lm-evaluation-harness through a unillm engine.

    Every further argument is lm-eval's (lm-eval run --help), e.g. --tasks unillm_mc,unillm_gen
    --limit 10 --output_path out/. unillm's shipped tasks (unillm_mc, unillm_gen) run on local
    data; --include_path DIR points lm-eval at your own tasks instead.
    """
    from unillm import UnillmError

    from .models import resolve_cli_model

    try:
        import unillm.eval as ueval

        ueval.register()
        from lm_eval.__main__ import cli_evaluate
    except UnillmError as exc:
        raise fail(exc) from None
    rest = list(ctx.args)
    if "--model" in rest or "--model_args" in rest:
        raise fail("give the model as unillm's --engine/--model/--engine-option, not lm-eval's "
                   "--model/--model_args")
    args = {"engine": engine, **parse_pairs(engine_option, "--engine-option")}
    if model is not None:
        args["model"] = resolve_cli_model(model)
    if "--device" not in rest:  # lm-eval's default is cuda:0; unillm's engines choose
        rest += ["--device", "auto"]
    if "--include_path" not in rest:  # lm-eval takes one path: the user's replaces unillm's
        rest += ["--include_path", str(ueval.TASKS_DIR)]
    sys.argv = ["lm-eval", "run", "--model", ueval.MODEL_NAME, "--model_args",
                json.dumps(args), *rest]
    cli_evaluate()


def register(app: typer.Typer) -> None:
    app.command("eval", context_settings={"allow_extra_args": True,
                                          "ignore_unknown_options": True})(eval_command)
