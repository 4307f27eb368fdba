"""The feature cache on disk: FMA-layout tables, memory-mapped log-mel, manifests."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mattlib.atomic import write_atomic, write_json
from mattlib.errors import MattError
from mattlib.features.mel import MelSettings
from mattlib.features.stats import fma518_columns

__all__ = ["MelStore", "mel_dir", "load_mel", "load_fma518"]


def _write_failures(path: Path, failures: list[tuple[int, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(failures, columns=["track_id", "path", "error"]).sort_values("track_id")
    write_atomic(path, lambda p: df.to_csv(p, index=False))
    return df


def _read_padded(folder: Path) -> list[int]:
    """Track ids of the fma518 table whose clip was shorter than one analysis frame."""
    path = folder / "padded.csv"
    return pd.read_csv(path)["track_id"].astype(np.int64).tolist() if path.exists() else []


def _read_failures(folder: Path) -> pd.DataFrame:
    path = folder / "failures.csv"
    if not path.exists():
        return pd.DataFrame(columns=["track_id", "path", "error"])
    return pd.read_csv(path, dtype={"track_id": np.int64, "path": str, "error": str})


def _write_features(folder: Path, df: pd.DataFrame) -> None:
    df = df.sort_index().astype(np.float32)
    df.index.name = "track_id"
    df.columns = fma518_columns()
    write_atomic(folder / "features.csv", lambda p: df.to_csv(p, float_format="%.10e"))
    write_atomic(folder / "features.parquet", lambda p: df.to_parquet(p))


def _read_features_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, index_col=0, header=[0, 1, 2])
    df.index = df.index.astype(np.int64)
    df.index.name = "track_id"
    return df.astype(np.float32)


def _read_table(folder: Path) -> pd.DataFrame:
    """The merged fma518 table: the parquet copy when it is at least as new as the csv."""
    csv, pq = folder / "features.csv", folder / "features.parquet"
    if pq.exists() and pq.stat().st_mtime_ns >= csv.stat().st_mtime_ns:
        df = pd.read_parquet(pq)
        df.columns = fma518_columns()
        df.index = df.index.astype(np.int64)
        df.index.name = "track_id"
        return df.astype(np.float32)
    return _read_features_csv(csv)


MANIFEST = "manifest.json"
_BLOCK_ROWS = 256  # mel.npy rows per checksum part


def _sha1_file(path: Path) -> str:
    import hashlib

    sha = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _mel_parts(mel: np.ndarray) -> list[str]:
    """SHA-1 of each block of ``_BLOCK_ROWS`` rows of ``mel.npy``."""
    import hashlib

    return [
        hashlib.sha1(np.ascontiguousarray(mel[i : i + _BLOCK_ROWS]).tobytes()).hexdigest()
        for i in range(0, len(mel), _BLOCK_ROWS)
    ]


def _write_manifest(folder: Path, files: list[str], *, mel: np.ndarray | None = None) -> None:
    """Written last: sizes and checksums of ``files`` (and of ``mel.npy`` per part of rows)."""
    entry = {name: {"bytes": (folder / name).stat().st_size, "sha1": _sha1_file(folder / name)} for name in files}
    manifest: dict[str, Any] = {"files": entry}
    if mel is not None:
        manifest["mel"] = {
            "bytes": (folder / "mel.npy").stat().st_size,
            "shape": list(mel.shape),
            "dtype": str(mel.dtype),
            "block_rows": _BLOCK_ROWS,
            "parts": _mel_parts(mel),
        }
    write_json(folder / MANIFEST, manifest, default=str)


class DamagedCacheError(MattError, RuntimeError):
    """A feature cache is incomplete or does not match its manifest; the message names the file
    and the fix."""


def _fix(folder: Path) -> str:
    return (
        f"run `matt features ... --repair --out {folder.parent}` (or the notebook 02 extraction) "
        "to re-extract what is damaged"
    )


def _check_manifest(folder: Path) -> dict:
    """Compare the cache folder with its manifest; raise :class:`DamagedCacheError` on a mismatch."""
    path = folder / MANIFEST
    if not path.exists():
        raise DamagedCacheError(
            f"{folder}: no {MANIFEST} (the extraction did not finish, or the cache predates manifests); {_fix(folder)}"
        )
    manifest = json.loads(path.read_text())
    for name, want in manifest["files"].items():
        file = folder / name
        if not file.exists() or file.stat().st_size != want["bytes"] or _sha1_file(file) != want["sha1"]:
            raise DamagedCacheError(f"{file}: damaged (size or checksum differs from {MANIFEST}); {_fix(folder)}")
    if "mel" in manifest:
        want = manifest["mel"]
        file = folder / "mel.npy"
        if not file.exists() or file.stat().st_size != want["bytes"]:
            raise DamagedCacheError(
                f"{file}: cut short or replaced ({file.stat().st_size if file.exists() else 0}"
                f" of {want['bytes']} bytes); {_fix(folder)}"
            )
    return manifest


def _damaged_mel_rows(folder: Path, manifest: dict) -> list[int]:
    """Rows of ``mel.npy`` in parts whose checksum differs from the manifest."""
    mel = np.load(folder / "mel.npy", mmap_mode="r")
    want, step = manifest["mel"]["parts"], manifest["mel"]["block_rows"]
    bad = [i for i, (a, b) in enumerate(zip(_mel_parts(mel), want)) if a != b]
    return [r for i in bad for r in range(i * step, min((i + 1) * step, len(mel)))]


def _warn_failures(n_failed: int, n_total: int, folder: Path, stacklevel: int = 3) -> None:
    if n_failed:
        warnings.warn(
            f"{n_failed} of {n_total} tracks failed feature extraction and are excluded "
            f"(see {folder / 'failures.csv'})",
            stacklevel=stacklevel,
        )


def load_fma518(cache_dir: str | os.PathLike) -> pd.DataFrame:
    """Load the extracted 518 FMA statistics.

    Parameters
    ----------
    cache_dir : str or Path
        The cache folder given to :func:`extract` (holding ``fma518/``), or ``fma518/`` itself.

    Returns
    -------
    pandas.DataFrame, float32, (n_tracks, 518)
        Index ``track_id``; FMA's 3-level columns.  Failed tracks are absent (a warning says how
        many).
    """
    folder = Path(cache_dir)
    if folder.name != "fma518" and (folder / "fma518").is_dir():
        folder = folder / "fma518"
    csv = folder / "features.csv"
    if not csv.exists():
        raise FileNotFoundError(
            f"no extracted features in {folder} (features.csv missing); run "
            "mattlib.features.extract(..., kind='fma518') or `matt features --kind fma518`"
        )
    _check_manifest(folder)
    df = _read_table(folder)
    failures = _read_failures(folder)
    failed = set(failures["track_id"]) - set(df.index)
    _warn_failures(len(failed), len(df) + len(failed), folder)
    return df


@dataclasses.dataclass
class MelStore:
    """Extracted log-mel spectrograms (see :func:`load_mel`).

    Attributes
    ----------
    mel : np.memmap, float16, shape (N, n_mels, T)
        All rows, failed ones included (zeros); read-only memory map.
    index : pandas.DataFrame
        One row per successfully extracted track, indexed by ``track_id``, columns ``row`` (into
        ``mel``) and ``padded`` (bool).
    failures : pandas.DataFrame
        ``track_id, path, error``.
    settings : MelSettings
    path : Path
    """

    mel: np.ndarray
    index: pd.DataFrame
    failures: pd.DataFrame
    settings: MelSettings
    path: Path

    @property
    def track_ids(self) -> np.ndarray:
        return self.index.index.to_numpy()

    @property
    def padded(self) -> np.ndarray:
        return self.index["padded"].to_numpy(bool)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        """The i-th good track's spectrogram, (n_mels, T) float16 (a view into the memmap)."""
        return self.mel[int(self.index["row"].iat[i])]

    def get(self, track_id: int) -> np.ndarray:
        """Spectrogram of a track id, (n_mels, T) float16; KeyError if absent or failed."""
        return self.mel[int(self.index.at[int(track_id), "row"])]


def mel_dir(cache_dir: str | os.PathLike, settings: MelSettings | None = None) -> Path:
    """``<cache_dir>/mel-<settings_id>``."""
    return Path(cache_dir) / f"mel-{(settings or MelSettings()).settings_id}"


def cached_mels(cache_dir: str | os.PathLike) -> dict[Path, MelSettings]:
    """Every complete log-mel extraction under ``cache_dir``: ``{folder: its MelSettings}``."""
    found = {}
    for folder in sorted(Path(cache_dir).glob("mel-*")):
        if (folder / "index.csv").exists() and (folder / "layout.json").exists():
            found[folder] = MelSettings(**json.loads((folder / "layout.json").read_text())["settings"])
    return found


def nearest_mel(cache_dir: str | os.PathLike, settings: MelSettings) -> Path | None:
    """The cached log-mel folder closest to ``settings``: ``mel_dir(cache_dir, settings)`` when
    complete, else the one sharing most of its fields (ties: the nearest clip length); None if
    nothing is cached.

    Examples
    --------
    >>> nearest_mel("/nonexistent", MelSettings()) is None
    True
    """
    found = cached_mels(cache_dir)
    wanted = dataclasses.asdict(settings)

    def distance(st: MelSettings) -> tuple[int, float]:
        fields = dataclasses.asdict(st)
        return sum(fields[k] != v for k, v in wanted.items()), abs(st.seconds - settings.seconds)

    return min(found, key=lambda folder: distance(found[folder])) if found else None


def load_mel(directory: str | os.PathLike, *, settings: MelSettings | None = None, verify: bool = True) -> MelStore:
    """Open extracted log-mel spectrograms (memory-mapped, nothing is read into RAM).

    Parameters
    ----------
    directory : str or Path
        A ``mel-<settings_id>`` folder, or the cache folder together with ``settings``.
    settings : MelSettings, optional
        Used to find the folder when ``directory`` is the cache folder.
    verify : bool, default True
        Compare every part of ``mel.npy`` with the checksums of ``manifest.json`` (reads the
        whole file once: about 6.5 GB on FMA medium at the paper's settings). The sizes and the
        other files are always checked.

    Returns
    -------
    MelStore
        Failed tracks are excluded from its index (a warning says how many).
    """
    folder = Path(directory)
    if not (folder / "layout.json").exists() and settings is not None:
        folder = mel_dir(folder, settings)
    index_path = folder / "index.csv"
    if not index_path.exists():
        raise FileNotFoundError(
            f"{folder}: no complete mel extraction (index.csv is written last); run "
            "mattlib.features.extract(..., kind='mel') to create or resume it"
        )
    manifest = _check_manifest(folder)
    layout = json.loads((folder / "layout.json").read_text())
    st = MelSettings(**layout["settings"])
    mel = np.load(folder / "mel.npy", mmap_mode="r")
    if verify and _damaged_mel_rows(folder, manifest):
        raise DamagedCacheError(
            f"{folder / 'mel.npy'}: {len(_damaged_mel_rows(folder, manifest))} rows differ "
            f"from {MANIFEST}; {_fix(folder)}"
        )
    index = pd.read_csv(index_path)
    ok = index[index["status"] == "ok"].set_index("track_id")[["row", "padded"]]
    ok["padded"] = ok["padded"].astype(bool)
    _warn_failures(int((index["status"] != "ok").sum()), len(index), folder)
    return MelStore(mel=mel, index=ok, failures=_read_failures(folder), settings=st, path=folder)
