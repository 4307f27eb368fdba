"""Feature kinds: what the cache holds per track, named in one registry, :data:`KINDS`.

A :class:`FeatureKind` says how one clip is computed (``compute``: ``"module:function"``, called
in the workers as ``compute(path, settings) -> (value, padded)``, raising on a failed clip) and
how the results are stored:

* ``"table"``: one row of values per track in ``<cache>/<name>/`` (``fma518``: FMA's
  ``features.csv`` layout, merged from resumable parts);
* ``"array"``: one fixed-shape array per track in a memmap (float16 unless ``dtype`` says
  otherwise), ``<cache>/<name>-<settings_id>/`` (``mel``, ``musicnn``), for kinds with settings
  (an object with ``shape``, ``settings_id`` and ``to_dict()``).

An array kind may split its clip in two (``prepare`` and ``batch``): the workers run
``prepare(path, settings) -> (input, padded)`` (decoding), and the parent runs
``batch(inputs, settings, device) -> values`` on the inputs of a whole chunk at once (a network on
many clips' patches, on CUDA when there is one) while the workers decode the next chunks.

The registry holds strings and plain data only, so :mod:`mattlib.study.settings` reads the names
(``kind``: any key or ``both``) without decoding audio or importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattlib.errors import MattError
from mattlib.registry import resolve

__all__ = ["KINDS", "FeatureError", "FeatureKind", "feature_kind"]


class FeatureError(MattError, ValueError):
    """A feature extraction asked for what cannot be done (an unknown kind, no audio to read)."""


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
    dtype : str, default "float16"
        What an array kind stores.
    prepare, batch : str, optional
        ``"module:function"`` of the two halves of ``compute`` (see the module docstring); both or
        neither.
    """

    name: str
    storage: str
    compute: str
    settings: str | None = None
    chunk: int = 8
    dtype: str = "float16"
    prepare: str | None = None
    batch: str | None = None

    def __post_init__(self) -> None:
        if self.storage not in ("table", "array"):
            raise ValueError(f"feature kind {self.name!r}: storage must be 'table' or 'array', got {self.storage!r}")
        if self.storage == "array" and self.settings is None:
            raise ValueError(f"feature kind {self.name!r}: an array kind needs settings (its shape)")
        if (self.prepare is None) != (self.batch is None):
            raise ValueError(f"feature kind {self.name!r}: give both prepare and batch, or neither")

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
    "musicnn": FeatureKind(
        "musicnn",
        "array",
        "mattlib.features.musicnn:musicnn_clip",
        settings="mattlib.features.musicnn:MusicnnSettings",
        chunk=16,
        dtype="float32",
        prepare="mattlib.features.musicnn:musicnn_input",
        batch="mattlib.features.musicnn:musicnn_batch",
    ),
}


def feature_kind(name: str) -> FeatureKind:
    """``KINDS[name]``; an unknown name raises a ``ValueError`` listing the valid kinds."""
    if name not in KINDS:
        raise FeatureError(f"unknown feature kind {name!r}; valid kinds: {', '.join(KINDS)}")
    return KINDS[name]
