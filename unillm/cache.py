"""unillm's on-disk cache: where derived artefacts live and how they are written safely.

Several things are built once and reused: test models, tokenizers, engine-specific conversions
of a Hugging Face checkpoint (CTranslate2, GGUF, ...). They share one root and one discipline,
written here once: a build happens under a file lock (two processes never build the same thing
twice, nor read it half-built) into a temporary directory that is renamed into place only when
the build finished, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_root() -> Path:
    """Where unillm caches what it builds: $UNILLM_CACHE, else ~/.cache/unillm."""
    return Path(os.environ.get("UNILLM_CACHE", Path.home() / ".cache" / "unillm"))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if needed), held for the `with` block.

    The lock file is removed when the block ends, whether the build in it succeeded or not, so
    the cache holds only finished artefacts (a failed conversion used to leave its ``.lock``).
    Removing a lock file safely: it is unlinked while still held, and a process that was waiting
    on it checks, once it holds the lock, that `path` still names the file it locked; if not
    (unlinked, or replaced by a newer lock file) it locks the current file instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = open(path, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fh.fileno())
            if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                continue  # the holder before us removed it: lock the file that is there now
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            return
        finally:
            fh.close()  # closing releases the lock (after the unlink above)


def build_into(directory: Path, builder: Callable[[Path], None]) -> None:
    """Run `builder(tmp)` and rename tmp to `directory` only when it finished.

    A failed or interrupted build leaves nothing at `directory` (and removes its temporary
    directory when Python still runs its cleanup). `directory` must not exist yet.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        builder(tmp)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
