"""A pytest plugin (``-p tests.core.torchless``) that makes every engine library unimportable,
so a run shows which of the core's tests need none of them."""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = frozenset({"torch", "transformers", "ctranslate2", "llama_cpp", "vllm", "tokenizers"})


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked: the core's tests run without engine libraries")
        return None


sys.meta_path.insert(0, _Blocked())
