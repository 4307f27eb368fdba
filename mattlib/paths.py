"""Where relative paths point: the project root, whatever the working directory.

A notebook opened in JupyterLab runs in ``notebooks/``, papermill runs it wherever it is told,
and a params file is read from the repository root: a relative path such as ``data/demo`` must
mean the same folder in all three. Relative paths in notebooks and params files are therefore
resolved against the *project root*:

1. ``$MATT_HOME`` when set;
2. else the checkout this package was installed from (the folder holding ``pyproject.toml``
   beside the ``mattlib`` package, as after ``pip install -e .``);
3. else the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "resolve", "require"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The folder relative paths are resolved against (see the module docstring)."""
    home = os.environ.get("MATT_HOME")
    if home:
        return Path(home).expanduser().resolve()
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").exists() and (checkout / "notebooks").is_dir():
        return checkout
    return Path.cwd().resolve()


def resolve(path: str | Path) -> Path:
    """``path`` made absolute: ``~`` expanded, a relative path taken from :func:`project_root`."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def require(path: str | Path, *, what: str, hint: str) -> Path:
    """:func:`resolve` ``path`` and check that it exists.

    Raises
    ------
    FileNotFoundError
        One line naming what was looked for, the absolute path tried, the working directory
        and ``hint`` (what to do).
    """
    resolved = resolve(path)
    if not resolved.exists():
        raise FileNotFoundError(
            f"{what} not found: {resolved} (from {str(path)!r}, relative to the project root "
            f"{project_root()}; working directory {Path.cwd()}). {hint}"
        )
    return resolved
