"""Every public exception unillm raises is defined in unillm/errors.py (one hierarchy, one
place to look), whichever module raises it; the modules that raised them first still export
them under their old names."""

from __future__ import annotations

import ast
from pathlib import Path

import unillm.errors

ROOT = Path(unillm.errors.__file__).resolve().parent

# Raised and caught inside `unillm serve` only: its handler turns it into the HTTP response.
INTERNAL = {("serve/errors.py", "APIError")}


def _exception_classes(path: Path) -> list[str]:
    found = []
    errors = {name for name in dir(unillm.errors) if isinstance(getattr(unillm.errors, name), type)}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
        if any(b.endswith(("Error", "Exception", "Failure")) or b in errors for b in bases):
            found.append(node.name)
    return found


def test_every_exception_class_is_defined_in_errors_py():
    stray = [f"{path.relative_to(ROOT)}: {name}" for path in sorted(ROOT.rglob("*.py"))
             if path.name != "errors.py" or path.parent != ROOT
             for name in _exception_classes(path)
             if (str(path.relative_to(ROOT)), name) not in INTERNAL]
    assert not stray, f"define these in unillm/errors.py: {stray}"


def test_moved_exceptions_keep_their_old_import_paths_and_are_unillm_errors():
    from unillm.bench.deps import MissingDependency
    from unillm.bench.worker import WorkerError
    from unillm.serve import QueueFullError
    from unillm.serve.scheduler import QueueFullError as FromScheduler

    assert QueueFullError is FromScheduler is unillm.errors.QueueFullError
    assert WorkerError is unillm.errors.WorkerError
    assert MissingDependency is unillm.errors.MissingDependency
    for cls in (QueueFullError, WorkerError, MissingDependency):
        assert issubclass(cls, unillm.errors.UnillmError)
    full = QueueFullError(3, 17)
    assert full.retry_after == 3 and "17 requests waiting" in str(full)
