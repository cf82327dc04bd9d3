"""The shipped tasks' local data: JSON lines next to this file, as lm-eval datasets.

lm-eval calls a task's ``custom_dataset`` with the run's metadata (model arguments included)
as keyword arguments, which these loaders do not need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def _dataset(name: str) -> dict[str, Any]:
    import datasets

    return {"test": datasets.load_dataset("json", data_files=str(HERE / name), split="train")}


def multiple_choice(**_metadata: Any) -> dict[str, Any]:
    return _dataset("mc.jsonl")


def generation(**_metadata: Any) -> dict[str, Any]:
    return _dataset("gen.jsonl")
