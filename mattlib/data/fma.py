"""Loaders for the Free Music Archive (FMA) on-disk format.

One module every notebook imports. The same functions serve the real FMA (``fma_metadata.zip``
plus ``fma_<subset>.zip`` unpacked under one root) and the project's demo dataset, which is
written in exactly that format (:mod:`mattlib.data.demo`).

Layout of a data root::

    <root>/fma_metadata/tracks.csv      2-row column header (group, field), index ``track_id``
    <root>/fma_metadata/genres.csv      163 genres, ``parent`` links, ``top_level``
    <root>/fma_metadata/features.csv    optional: 518 statistics, 3-row header
    <root>/fma_<subset>/XXX/XXXXXX.mp3  audio; XXX = first three digits of the 6-digit id

Reference: M. Defferrard et al., "FMA: A Dataset for Music Analysis", ISMIR 2017.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.errors import MattError
from mattlib.atomic import write_atomic

__all__ = [
    "load_features_cached",
    "FMADataError",
    "SUBSETS",
    "SPLITS",
    "FMA_MEDIUM_TRAIN_TRACKS",
    "FMA_MEDIUM_TRAIN_COUNTS",
    "load_tracks",
    "load_genres",
    "load_features",
    "FMA_FEATURE_SIZES",
    "FMA_STATISTICS",
    "fma518_columns",
    "write_features",
    "top_genres",
    "subset_tracks",
    "audio_path",
    "metadata_path",
    "check_metadata",
    "FMA_ROW_COUNTS",
]

#: FMA subsets, smallest first; "medium" means small ∪ medium (25,000 tracks on the real data).
SUBSETS = ("small", "medium", "large")
#: FMA's artist-disjoint splits.
SPLITS = ("training", "validation", "test")
#: Training tracks of FMA medium; the paper's tail thresholds (100, 200) refer to this size.
FMA_MEDIUM_TRAIN_TRACKS = 19_922
#: Training tracks per top genre on FMA medium, largest first (the long tail the paper studies).
FMA_MEDIUM_TRAIN_COUNTS: dict[str, int] = {
    "Rock": 5681,
    "Electronic": 5050,
    "Experimental": 1801,
    "Hip-Hop": 1761,
    "Folk": 1215,
    "Instrumental": 1045,
    "Pop": 945,
    "International": 814,
    "Classical": 495,
    "Old-Time / Historic": 408,
    "Jazz": 306,
    "Country": 142,
    "Soul-RnB": 94,
    "Spoken": 94,
    "Blues": 58,
    "Easy Listening": 13,
}

_DOWNLOAD_HINT = (
    "Download fma_metadata.zip from https://github.com/mdeff/fma and unpack it under the data "
    "root, or build the demo dataset with `matt demo-data --out DIR`."
)

# Columns holding Python-literal lists, and columns holding dates.
_LIST_COLUMNS = [
    ("track", "tags"),
    ("album", "tags"),
    ("artist", "tags"),
    ("track", "genres"),
    ("track", "genres_all"),
]
_DATE_COLUMNS = [
    ("track", "date_created"),
    ("track", "date_recorded"),
    ("album", "date_created"),
    ("album", "date_released"),
    ("artist", "date_created"),
    ("artist", "active_year_begin"),
    ("artist", "active_year_end"),
]
_REQUIRED_TRACK_COLUMNS = [
    ("album", "id"),
    ("artist", "id"),
    ("set", "split"),
    ("set", "subset"),
    ("track", "genre_top"),
]


class FMADataError(MattError, RuntimeError):
    """A file of an FMA root is missing or malformed; the message names the file and the fix."""


def metadata_path(root: str | Path, name: str) -> Path:
    """Path of ``<root>/fma_metadata/<name>``; ``root`` may also point at the file itself."""
    root = Path(root)
    if root.is_file():
        return root
    return root / "fma_metadata" / name


def _require(path: Path, what: str) -> Path:
    """The file exists, is not empty and ends with a complete record (a newline)."""
    if not path.exists():
        raise FMADataError(f"{what} not found: {path}. {_DOWNLOAD_HINT}")
    size = path.stat().st_size
    if size == 0:
        raise FMADataError(f"{what} is empty: {path}. {_DOWNLOAD_HINT}")
    with path.open("rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) not in (b"\n", b"\r"):
            raise FMADataError(f"{what} is cut short (its last record is incomplete): {path}. "
                               f"Unpack it again. {_DOWNLOAD_HINT}")
    return path


#: Rows of FMA's own metadata files (fma_metadata.zip): a file that is FMA's (it starts at FMA's
#: first id and is large) must hold all of them.
FMA_ROW_COUNTS = {"tracks.csv": (2, 106_574), "features.csv": (2, 106_574), "genres.csv": (1, 163)}


#: Written last into a root the project generates (:mod:`mattlib.data.demo`): its files are not FMA's.
GENERATED_MARKER = "demo_complete.json"


def _check_row_count(path: Path, frame: pd.DataFrame, name: str) -> None:
    """FMA's own files must hold FMA's published row counts; a generated root's tracks and
    features, the count its marker declares."""
    first_id, expected = FMA_ROW_COUNTS[name]
    marker = path.parent.parent / GENERATED_MARKER
    if marker.is_file():  # the demo, or the FMA-medium-shaped benchmark data
        declared = json.loads(marker.read_text()).get("n_tracks")
        if name != "genres.csv" and declared is not None and len(frame) != declared:
            raise FMADataError(
                f"{path}: {len(frame)} rows where {marker.name} declares n_tracks {declared}; the file is cut "
                f"short or edited. Generate the root again (matt demo-data --out {path.parent.parent})"
            )
        return
    is_fma = len(frame) >= min(expected, 10_000) // 2 and len(frame) and frame.index[0] == first_id
    if is_fma and len(frame) != expected:
        raise FMADataError(f"{path}: {len(frame)} rows where FMA's {name} has {expected}; the file is "
                           f"damaged or incomplete. {_DOWNLOAD_HINT}")


def check_metadata(root: str | Path) -> None:
    """Check, cheaply, that ``root`` holds complete ``tracks.csv`` and ``genres.csv``.

    Raises
    ------
    FMADataError
        One line naming the file and the fix.
    """
    root = Path(root)
    if not root.is_dir():
        raise FMADataError(f"data root not found: {root}. {_DOWNLOAD_HINT}")
    for name in ("tracks.csv", "genres.csv"):
        _require(metadata_path(root, name), f"FMA {name}")


def _parse_literal(value: object, *, path: Path, track_id: object, column: tuple[str, str]):
    if isinstance(value, float) and np.isnan(value):
        return []
    if not isinstance(value, str):
        return value
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError) as err:
        raise FMADataError(
            f"{path}: track {track_id}, column {column}: expected a Python list literal such as "
            f"'[21, 17]', got {value!r} ({err.__class__.__name__})"
        ) from None
    if not isinstance(parsed, list):
        raise FMADataError(
            f"{path}: track {track_id}, column {column}: expected a list, got {value!r}"
        )
    return parsed


def load_tracks(root: str | Path) -> pd.DataFrame:
    """Load FMA's ``tracks.csv``.

    Parameters
    ----------
    root : str or Path
        Data root holding ``fma_metadata/tracks.csv`` (or the path of a ``tracks.csv``).

    Returns
    -------
    pandas.DataFrame
        One row per track, index ``track_id`` (int), 2-level columns ``(group, field)`` with
        groups ``album``, ``artist``, ``set``, ``track``. List columns (``genres``,
        ``genres_all``, ``tags``) hold Python lists (parsed with :func:`ast.literal_eval`,
        never ``eval``), date columns hold timestamps, ``('set', 'subset')`` is an ordered
        categorical small < medium < large, ``('set', 'split')`` a categorical of
        training / validation / test, and ``('track', 'genre_top')`` a categorical.

    Raises
    ------
    FMADataError
        If the file is missing or malformed; the message names the file and the problem.
    """
    path = _require(metadata_path(root, "tracks.csv"), "FMA tracks.csv")
    try:
        tracks = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise FMADataError(f"{path}: cannot parse as FMA tracks.csv ({err})") from None
    if not isinstance(tracks.columns, pd.MultiIndex) or tracks.columns.nlevels != 2:
        raise FMADataError(f"{path}: expected FMA's 2-row column header (group, field)")
    missing = [c for c in _REQUIRED_TRACK_COLUMNS if c not in tracks.columns]
    if missing:
        raise FMADataError(
            f"{path}: missing column(s) {missing}; is this FMA's tracks.csv with its 2-row header?"
        )
    try:
        tracks.index = tracks.index.astype(np.int64)
    except (TypeError, ValueError):
        bad = [i for i in tracks.index if not str(i).strip().lstrip("-").isdigit()][:3]
        raise FMADataError(f"{path}: non-integer track_id value(s) {bad}") from None
    tracks.index.name = "track_id"
    _check_row_count(path, tracks, "tracks.csv")

    for column in _LIST_COLUMNS:
        if column in tracks.columns:
            tracks[column] = [
                _parse_literal(v, path=path, track_id=tid, column=column)
                for tid, v in zip(tracks.index, tracks[column])
            ]
    for column in _DATE_COLUMNS:
        if column in tracks.columns:
            tracks[column] = pd.to_datetime(tracks[column], errors="coerce")

    subset = tracks[("set", "subset")]
    unknown = sorted(set(subset.dropna().unique()) - set(SUBSETS))
    if unknown:
        raise FMADataError(f"{path}: column ('set', 'subset') has unknown value(s) {unknown}")
    tracks[("set", "subset")] = pd.Categorical(subset, categories=SUBSETS, ordered=True)
    split = tracks[("set", "split")]
    unknown = sorted(set(split.dropna().unique()) - set(SPLITS))
    if unknown:
        raise FMADataError(f"{path}: column ('set', 'split') has unknown value(s) {unknown}")
    tracks[("set", "split")] = pd.Categorical(split, categories=SPLITS)
    tracks[("track", "genre_top")] = tracks[("track", "genre_top")].astype("category")
    for column in [("album", "id"), ("artist", "id")]:
        tracks[column] = pd.to_numeric(tracks[column], errors="coerce").astype("Int64")
    return tracks


def load_genres(root: str | Path) -> pd.DataFrame:
    """Load FMA's ``genres.csv``: index ``genre_id``; ``#tracks``, ``parent``, ``title``,
    ``top_level`` (the id of the genre's top-level ancestor; equal to ``genre_id`` for the 16
    top-level genres)."""
    path = _require(metadata_path(root, "genres.csv"), "FMA genres.csv")
    try:
        genres = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise FMADataError(f"{path}: cannot parse as FMA genres.csv ({err})") from None
    missing = [c for c in ("parent", "title", "top_level") if c not in genres.columns]
    if missing or genres.index.name != "genre_id":
        raise FMADataError(
            f"{path}: expected columns genre_id, #tracks, parent, title, top_level; "
            f"missing {missing or ['genre_id']}"
        )
    _check_row_count(path, genres, "genres.csv")
    return genres


def top_genres(genres: pd.DataFrame) -> list[str]:
    """Titles of the top-level genres (16 on FMA), ordered by genre id."""
    top = genres[genres["parent"] == 0].sort_index()
    return top["title"].tolist()


def load_features(path: str | Path) -> pd.DataFrame:
    """Load FMA's ``features.csv`` (or the project's own, same layout).

    Returns
    -------
    pandas.DataFrame
        ``(n_tracks, 518)`` float, index ``track_id``, 3-level columns
        ``(feature, statistics, number)``, e.g. ``('mfcc', 'mean', '01')``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "fma_metadata" / "features.csv"
    _require(path, "FMA features.csv")
    try:
        features = pd.read_csv(path, index_col=0, header=[0, 1, 2])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise FMADataError(f"{path}: cannot parse as FMA features.csv ({err})") from None
    if not isinstance(features.columns, pd.MultiIndex) or features.columns.nlevels != 3:
        raise FMADataError(f"{path}: expected 3 header rows (feature, statistics, number)")
    try:
        features = features.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise FMADataError(f"{path}: non-numeric feature value ({err})") from None
    features.index.name = "track_id"
    empty = features.index[features.isna().all(axis=1)]
    if len(empty):
        raise FMADataError(f"{path}: {len(empty)} row(s) without any value (track {empty[0]}, ...); the "
                           "file is damaged: re-extract it (`matt features --repair`) or unpack it again")
    if path.name == "features.csv" and path.parent.name == "fma_metadata":
        _check_row_count(path, features, "features.csv")
    return features


def load_features_cached(path: str | Path, *, cache_dir: str | Path) -> pd.DataFrame:
    """:func:`load_features`, parsed once: later calls read a parquet copy kept in
    ``<cache_dir>/fma_features/``, named by the csv's size and modification time (a changed csv is
    parsed again). Every grid cell loads the table; parsing FMA's csv (106,574 x 518, 950 MB) costs
    each cell tens of seconds, reading the parquet copy about one.
    """
    import os
    import uuid

    path = Path(path)
    if path.is_dir():
        path = path / "fma_metadata" / "features.csv"
    _require(path, "FMA features.csv")
    stat = path.stat()
    copy = Path(cache_dir) / "fma_features" / f"features-{stat.st_size}-{stat.st_mtime_ns}.parquet"
    if copy.exists():
        features = pd.read_parquet(copy)
        features.index.name = "track_id"
        return features
    features = load_features(path)
    write_atomic(copy, features.to_parquet)  # cells race: each writes whole, one wins
    return features


def subset_tracks(tracks: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Tracks of an FMA subset: ``subset <= given``, so "medium" is small ∪ medium."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown FMA subset {subset!r}; valid: {', '.join(SUBSETS)}")
    return tracks[tracks[("set", "subset")] <= subset]


def audio_path(root: str | Path, track_id: int, *, subset: str) -> Path:
    """Path of a track's mp3: ``<root>/fma_<subset>/<id[:3]>/<id>.mp3`` with a 6-digit id."""
    if subset not in SUBSETS and subset != "full":
        raise ValueError(f"unknown FMA subset {subset!r}; valid: {', '.join(SUBSETS)}, full")
    track_id = int(track_id)
    if track_id < 0:
        raise ValueError(f"track_id must be non-negative, got {track_id}")
    name = f"{track_id:06d}"
    return Path(root) / f"fma_{subset}" / name[:3] / f"{name}.mp3"


# FMA's features.csv layout: 11 feature groups x 7 statistics = 518 columns
#: Rows per frame of each FMA feature group (each summarised by 7 statistics).
FMA_FEATURE_SIZES: dict[str, int] = {
    "chroma_cens": 12,
    "chroma_cqt": 12,
    "chroma_stft": 12,
    "mfcc": 20,
    "rmse": 1,
    "spectral_bandwidth": 1,
    "spectral_centroid": 1,
    "spectral_contrast": 7,
    "spectral_rolloff": 1,
    "tonnetz": 6,
    "zcr": 1,
}
#: The 7 statistics over time, as named in FMA's header (kurtosis is the excess kurtosis).
FMA_STATISTICS = ("mean", "std", "skew", "kurtosis", "median", "min", "max")


def fma518_columns() -> pd.MultiIndex:
    """The 518 columns of FMA's ``features.csv``, in FMA's (lexicographically sorted) order.

    Returns
    -------
    pandas.MultiIndex
        Levels ``(feature, statistics, number)``; ``number`` is a 2-digit string ``'01'..``.
    """
    tuples = [
        (name, stat, f"{i + 1:02d}")
        for name, size in FMA_FEATURE_SIZES.items()
        for stat in FMA_STATISTICS
        for i in range(size)
    ]
    return pd.MultiIndex.from_tuples(sorted(tuples), names=["feature", "statistics", "number"])


def write_features(path: str | Path, table: pd.DataFrame) -> Path:
    """Write a ``(n_tracks, 518)`` table as FMA's ``features.csv`` (3-row header, float32 values
    as ``'%.10e'``, index ``track_id``); returns ``path``."""
    table = table.sort_index().astype(np.float32)
    table.index.name = "track_id"
    table.columns = fma518_columns()
    path = Path(path)
    table.to_csv(path, float_format="%.10e")
    return path
