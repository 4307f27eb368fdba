"""Datasets: the one seam between a music collection on disk and the study.

The study needs five things of a collection: which tracks there are, their album, artist, genre
and split, the genre order, where each track's audio is, and (optionally) a ready-made table of
FMA's 518 statistics. Every dataset gives them through the same small interface,
:class:`Dataset`, returning a *flat tracks table*::

    index track_id (int) | album_id (int, -1 unknown) | artist_id (int) | split | genre

which :func:`mattlib.data.bags.make_bags` groups into bags. Three kinds are registered in
:data:`DATASETS`:

``fma``
    The Free Music Archive (``fma_metadata/`` + ``fma_<subset>/``), read by :mod:`mattlib.data.fma`.
    The demo dataset (:mod:`mattlib.data.demo`) is written in this format, so it is an ``fma`` root.
``collection``
    Any collection with album/artist metadata (GTZAN with an artist index, MTG-Jamendo, a lab's
    own library): one ``collection.csv`` with columns ``track_id, album_id, artist_id, genre,
    split`` and ``audio`` (a path relative to the CSV's folder), plus optionally a
    ``features.csv`` in FMA's 3-row layout beside it (then audio may be left empty).

Adding a dataset is one class with these methods and one line in :data:`DATASETS`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from mattlib.data import fma

__all__ = [
    "DATASETS",
    "DatasetError",
    "Dataset",
    "FMADataset",
    "CollectionDataset",
    "open_dataset",
    "detect_dataset",
    "write_collection",
    "FLAT_COLUMNS",
]

#: Columns of the flat tracks table every dataset returns (index ``track_id``).
FLAT_COLUMNS = ["album_id", "artist_id", "split", "genre"]
_COLLECTION_COLUMNS = ["track_id", "album_id", "artist_id", "genre", "split"]


class DatasetError(fma.FMADataError):
    """A dataset's files are missing or malformed; the message names the file and the fix."""


class Dataset(ABC):
    """Base class: a collection of tracks with album, artist, genre and split."""

    kind: ClassVar[str] = ""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @classmethod
    @abstractmethod
    def looks_like(cls, root: Path) -> bool:
        """Whether ``root`` holds a dataset of this kind (for :func:`detect_dataset`)."""

    @abstractmethod
    def tracks(self, *, subset: str = "medium") -> pd.DataFrame:
        """Flat tracks table (:data:`FLAT_COLUMNS`, index ``track_id``) of a subset."""

    @abstractmethod
    def genres(self) -> list[str]:
        """Genre names in the dataset's canonical order (the order of the classes)."""

    @abstractmethod
    def audio_paths(self, *, subset: str = "medium") -> dict[int, Path]:
        """``track_id -> audio file`` for the tracks of a subset."""

    @abstractmethod
    def official_features_path(self) -> Path | None:
        """The dataset's own ``features.csv`` of the 518 statistics (FMA's layout), or ``None``."""


class FMADataset(Dataset):
    """The Free Music Archive (or the demo, written in FMA's format)."""

    kind = "fma"

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        return (root / "fma_metadata" / "tracks.csv").exists()

    @functools.cached_property
    def _all_tracks(self) -> pd.DataFrame:
        return fma.load_tracks(self.root)  # parsed once per dataset object (slow on FMA's 106,574 rows)

    def tracks(self, *, subset: str = "medium") -> pd.DataFrame:
        table = fma.subset_tracks(self._all_tracks, subset)
        flat = pd.DataFrame(
            {
                "album_id": table[("album", "id")].fillna(-1).astype(np.int64).to_numpy(),
                "artist_id": table[("artist", "id")].fillna(-1).astype(np.int64).to_numpy(),
                "split": table[("set", "split")].astype("object").to_numpy(),
                "genre": table[("track", "genre_top")].astype("object").to_numpy(),
            },
            index=pd.Index(table.index.astype(np.int64), name="track_id"),
        )
        return flat

    def genres(self) -> list[str]:
        return fma.top_genres(fma.load_genres(self.root))

    def audio_paths(self, *, subset: str = "medium") -> dict[int, Path]:
        ids = fma.subset_tracks(self._all_tracks, subset).index
        return {int(t): fma.audio_path(self.root, int(t), subset=subset) for t in ids}

    def official_features_path(self) -> Path | None:
        path = fma.metadata_path(self.root, "features.csv")
        return path if path.exists() else None


class CollectionDataset(Dataset):
    """A generic collection: ``collection.csv`` (+ audio files and/or ``features.csv``).

    ``collection.csv`` columns: ``track_id`` (int, unique), ``album_id`` (int; empty or -1 when
    the track has no album), ``artist_id`` (int), ``genre`` (str), ``split`` (training /
    validation / test), ``audio`` (optional: path relative to the CSV's folder). The genre order
    is by training count, largest first (ties by name). ``subset`` is ignored: a collection has
    one.
    """

    kind = "collection"
    FILE: ClassVar[str] = "collection.csv"

    @classmethod
    def looks_like(cls, root: Path) -> bool:
        return (root / cls.FILE).exists()

    def _table(self) -> pd.DataFrame:
        path = self.root / self.FILE
        if not path.exists():
            raise DatasetError(
                f"collection file not found: {path}; write one with columns "
                f"{', '.join(_COLLECTION_COLUMNS)}, audio (mattlib.data.datasets.write_collection)"
            )
        try:
            table = pd.read_csv(path, dtype={"genre": "string", "split": "string", "audio": "string"})
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            raise DatasetError(f"{path}: cannot parse as a collection CSV ({err})") from None
        missing = [c for c in _COLLECTION_COLUMNS if c not in table.columns]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {missing}; a collection needs {', '.join(_COLLECTION_COLUMNS)} (+ audio)"
            )
        incomplete = table[["track_id", "artist_id", "genre", "split"]].isna().any(axis=1)
        if incomplete.any():
            row = int(np.flatnonzero(incomplete.to_numpy())[0]) + 2  # 1-based, after the header
            raise DatasetError(
                f"{path}: line {row} is incomplete (track_id, artist_id, genre and "
                "split are required); is the file cut short? Re-export it."
            )
        for column in ("track_id", "artist_id"):
            values = pd.to_numeric(table[column], errors="coerce")
            if values.isna().any() or (values % 1 != 0).any():
                bad = table.loc[values.isna() | (values % 1 != 0), column].head(3).tolist()
                raise DatasetError(f"{path}: column {column} must hold integers, got {bad}")
            table[column] = values.astype(np.int64)
        table["album_id"] = pd.to_numeric(table["album_id"], errors="coerce").fillna(-1).astype(np.int64)
        if table["track_id"].duplicated().any():
            dup = table.loc[table["track_id"].duplicated(), "track_id"].head(3).tolist()
            raise DatasetError(f"{path}: duplicate track_id {dup}")
        unknown = sorted(set(table["split"]) - set(fma.SPLITS))
        if unknown:
            raise DatasetError(f"{path}: column split has unknown value(s) {unknown}; valid: {', '.join(fma.SPLITS)}")
        return table.set_index("track_id")

    def tracks(self, *, subset: str = "medium") -> pd.DataFrame:
        table = self._table()
        flat = table[FLAT_COLUMNS].copy()
        flat["split"] = flat["split"].astype("object")
        flat["genre"] = flat["genre"].astype("object")
        return flat

    def genres(self) -> list[str]:
        table = self._table()
        counts = table.loc[table["split"] == "training", "genre"].value_counts()
        others = sorted(set(table["genre"]) - set(counts.index))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [str(g) for g, _ in ranked] + [str(g) for g in others]

    def audio_paths(self, *, subset: str = "medium") -> dict[int, Path]:
        table = self._table()
        if "audio" not in table.columns:
            return {}
        audio = table["audio"].dropna()
        return {int(t): self.root / str(p) for t, p in audio.items()}

    def official_features_path(self) -> Path | None:
        path = self.root / "features.csv"
        return path if path.exists() else None


#: Registered dataset kinds; a params file names one with ``dataset`` ("auto" detects it).
DATASETS: dict[str, type[Dataset]] = {
    FMADataset.kind: FMADataset,
    CollectionDataset.kind: CollectionDataset,
}


def detect_dataset(root: str | Path) -> str:
    """The kind of dataset at ``root`` (the first registered kind whose files are there)."""
    root = Path(root)
    for kind, cls in DATASETS.items():
        if cls.looks_like(root):
            return kind
    raise DatasetError(
        f"no dataset found at {root.resolve()} (working directory {Path.cwd()}): expected "
        "fma_metadata/tracks.csv (FMA or the demo: `matt demo-data --out DIR`) or collection.csv "
        "(a generic collection, see mattlib.data.datasets)"
    )


def open_dataset(root: str | Path, *, dataset: str = "auto") -> Dataset:
    """Open the dataset at ``root``; ``dataset`` is a key of :data:`DATASETS` or "auto" (which
    one the folder holds, :func:`detect_dataset`)."""
    if dataset == "auto":
        dataset = detect_dataset(root)
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; valid: auto, {', '.join(DATASETS)}")
    return DATASETS[dataset](root)


def write_collection(root: str | Path, tracks: pd.DataFrame) -> Path:
    """Write ``collection.csv`` for a flat tracks table (columns :data:`FLAT_COLUMNS` and
    optionally ``audio``, index or column ``track_id``); returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    table = tracks.reset_index() if "track_id" not in tracks.columns else tracks
    missing = [c for c in _COLLECTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"tracks table lacks column(s) {missing}")
    columns = _COLLECTION_COLUMNS + (["audio"] if "audio" in table.columns else [])
    path = root / CollectionDataset.FILE
    table[columns].to_csv(path, index=False)
    return path
