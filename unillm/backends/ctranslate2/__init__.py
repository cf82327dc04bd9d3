"""CTranslate2 (https://github.com/OpenNMT/CTranslate2): the engine and its conversion cache.

A plugin like any other: registered through the ``unillm`` entry-point group. Importing this
package does not import ctranslate2; loading the engine does.
"""

from __future__ import annotations

from ...hookspecs import hookimpl
from .engine import CTranslate2Engine, CTranslate2Options

__all__ = ["CTranslate2Engine", "CTranslate2Options"]


@hookimpl
def unillm_register_engines(register) -> None:
    register(
        "ctranslate2", CTranslate2Engine, requires=("ctranslate2", "transformers"),
        extra="ctranslate2",
        description="CTranslate2 (Generator.generate_batch); converts Hugging Face models on first use",
    )
