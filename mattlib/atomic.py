"""Files written whole or not at all: the one helper every file writer of the study uses."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_atomic", "write_json"]


def write_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The rename is atomic on POSIX, so a reader (or a process killed mid-write) sees the old file or
    the new one, never half of one; the temporary name is unique, so concurrent writers never share
    it, and it is removed if ``write`` fails.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(target, lambda tmp: tmp.write_text("whole")).read_text()
    'whole'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json(path: str | os.PathLike, data: Any, *, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``data`` as indented JSON (and a final newline) to ``path`` with :func:`write_atomic`.

    ``default`` converts what :mod:`json` cannot (see :func:`json.dumps`).

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "a.json"
    >>> print(write_json(target, {"tracks": 2}).read_text(), end="")
    {
      "tracks": 2
    }
    """
    text = json.dumps(data, indent=2, default=default) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))
