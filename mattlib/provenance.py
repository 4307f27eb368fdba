"""What produced a result: a digest of the ``mattlib`` package source.

A finished grid cell and a training resume point are reused only when the code that made them is
the code that runs now (:mod:`mattlib.runner`, :class:`mattlib.training.Trainer`).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__all__ = ["PACKAGE_DIR", "code_digest"]

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=8)
def _digest(files: tuple[tuple[str, str, int, int], ...]) -> str:
    sha = hashlib.sha1()
    for path, name, _, _ in files:
        sha.update(name.encode() + b"\0")
        sha.update(Path(path).read_bytes() + b"\0")
    return sha.hexdigest()


def _files(root: Path) -> tuple[tuple[str, str, int, int], ...]:
    """(path, relative name, mtime, size) of every source file: the cache key of the digest."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            stat = path.stat()
            out.append((str(path), path.relative_to(root).as_posix(), stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def code_digest(*, package_dir: str | Path = PACKAGE_DIR) -> str:
    """SHA-1 of every ``.py`` file of the package (names and bytes, in sorted order).

    Parameters
    ----------
    package_dir : path, default this package's folder

    Returns
    -------
    str
        40 hex digits; it changes when any library function changes.
    """
    return _digest(_files(Path(package_dir).resolve()))
