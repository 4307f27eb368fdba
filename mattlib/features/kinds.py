"""Feature kinds: what the cache holds per track, named in one registry, :data:`KINDS`.

A :class:`FeatureKind` says how one clip is computed (``compute``: ``"module:function"``, called
in the workers as ``compute(path, settings) -> (value, padded)``, raising on a failed clip) and
how the results are stored:

* ``"table"``: one row of values per track in ``<cache>/<name>/`` (``fma518``: FMA's
  ``features.csv`` layout, merged from resumable parts);
* ``"array"``: one fixed-shape array per track in a float16 memmap, ``<cache>/<name>-<settings_id>/``
  (``mel``), for kinds with settings (an object with ``shape``, ``settings_id`` and ``to_dict()``).

The registry holds strings and plain data only, so :mod:`mattlib.study.settings` reads the names
(``kind``: any key or ``both``) without decoding audio or importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattlib.models.registry import resolve

__all__ = ["KINDS", "FeatureKind", "feature_kind"]


@dataclass(frozen=True)
class FeatureKind:
    """One kind of per-track feature (see the module docstring).

    Parameters
    ----------
    name : str
        The registry key and the cache folder's name (``<name>`` or ``<name>-<settings_id>``).
    storage : {"table", "array"}
    compute : str
        ``"module:function"`` with ``function(path, settings) -> (value ndarray, padded bool)``.
    settings : str, optional
        ``"module:Class"`` of the kind's settings (an array kind's shape); None: none taken.
    chunk : int, default 8
        Most tracks per work unit (the resume granularity) when ``extract`` chooses.
    """

    name: str
    storage: str
    compute: str
    settings: str | None = None
    chunk: int = 8

    def __post_init__(self) -> None:
        if self.storage not in ("table", "array"):
            raise ValueError(f"feature kind {self.name!r}: storage must be 'table' or 'array', got {self.storage!r}")
        if self.storage == "array" and self.settings is None:
            raise ValueError(f"feature kind {self.name!r}: an array kind needs settings (its shape)")

    def settings_class(self) -> type | None:
        """The settings class (imported now), or None."""
        return None if self.settings is None else resolve(self.settings)

    def folder(self, cache_dir: str | os.PathLike, settings: Any = None) -> Path:
        """``<cache_dir>/<name>``, or ``<cache_dir>/<name>-<settings_id>`` for a kind with settings."""
        if self.settings is None:
            return Path(cache_dir) / self.name
        return Path(cache_dir) / f"{self.name}-{settings.settings_id}"

    def __call__(self, path: str | os.PathLike, settings: Any = None) -> tuple[Any, bool]:
        """Compute one clip: ``(value, padded)``."""
        return resolve(self.compute)(path, settings)


#: Feature kind name -> :class:`FeatureKind`.
KINDS: dict[str, FeatureKind] = {
    "fma518": FeatureKind("fma518", "table", "mattlib.features.stats:fma518_clip"),
    "mel": FeatureKind(
        "mel", "array", "mattlib.features.mel:mel_clip", settings="mattlib.features.mel:MelSettings", chunk=32
    ),
}


def feature_kind(name: str) -> FeatureKind:
    """``KINDS[name]``; an unknown name raises a ``ValueError`` listing the valid kinds."""
    if name not in KINDS:
        raise ValueError(f"unknown feature kind {name!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS[name]
