"""Helpers for tests, benchmarks and demos: locally built models (no hub needed)."""

from .models import PRESETS, ModelSpec, build_test_model, cache_root, resolve_model

__all__ = ["PRESETS", "ModelSpec", "build_test_model", "cache_root", "resolve_model"]
