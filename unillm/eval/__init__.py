"""unillm as a model of lm-evaluation-harness (lm-eval 0.4).

`UnillmLM` (lm.py) implements lm-eval's `LM` interface (loglikelihood, loglikelihood_rolling,
generate_until) over any unillm engine, through `Generator.score`, `score_rolling` and
`generate`, batched. `register()` makes it lm-eval's model ``unillm``, so

    import unillm.eval, lm_eval
    unillm.eval.register()
    lm_eval.simple_evaluate(model="unillm",
                            model_args={"engine": "transformers", "model": path},
                            tasks=["unillm_mc"], task_manager=unillm.eval.task_manager())

or ``lm_eval.simple_evaluate(model=unillm.eval.UnillmLM(generator=gen), ...)`` run lm-eval's
tasks on unillm; ``unillm eval`` does the same from the command line (cli/eval.py). Two small
tasks on local data ship in `tasks/` (no dataset hub): ``unillm_mc`` (multiple choice, scored
by log-likelihood) and ``unillm_gen`` (generate_until, exact match).

lm-eval is an optional dependency (``pip install 'unillm[eval]'``): it is imported when this
package's functions run, not when it is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).parent / "tasks"
"""The shipped lm-eval tasks (YAML and their local data)."""

MODEL_NAME = "unillm"
INSTALL = "pip install 'unillm[eval]'"

__all__ = ["MODEL_NAME", "TASKS_DIR", "UnillmLM", "register", "task_manager"]


def _lm_eval():
    try:
        import lm_eval
    except ImportError as exc:
        from ..errors import EngineUnavailableError

        raise EngineUnavailableError("lm-eval", f"lm-eval is not installed ({exc})",
                                     INSTALL) from exc
    return lm_eval


def register() -> None:
    """Make `UnillmLM` lm-eval's model ``unillm`` (idempotent)."""
    _lm_eval()
    import lm_eval.models  # noqa: F401 - lm-eval's own models first: an empty registry
    # is what makes lm-eval import them itself
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry.keys():
        model_registry.register(MODEL_NAME, target="unillm.eval.lm:UnillmLM")


def task_manager(include_path: str | None = None) -> Any:
    """lm-eval's `TaskManager` with unillm's shipped tasks (and `include_path`'s) added."""
    _lm_eval()
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR)] + ([include_path] if include_path else [])
    return TaskManager(include_path=paths)


def __getattr__(name: str) -> Any:
    if name == "UnillmLM":
        _lm_eval()
        from .lm import UnillmLM

        return UnillmLM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
