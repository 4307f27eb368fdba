"""Bulk extraction into the cache: parallel, resumable, fault-tolerant.

The public API (:func:`extract`, :func:`extract_subset`, :func:`extract_audio_dir`) and each
storage's writer (a "table" kind's parts and merge, an "array" kind's rows). The chunks of tracks
run through :mod:`mattlib.features.parallel` (local worker processes or Ray tasks) in the
functions of :mod:`mattlib.features.workers`; an array kind's folder (the memmap, its progress,
damage repair) is :mod:`mattlib.features.array_folder`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib import devices
from mattlib.atomic import write_atomic, write_json
from mattlib.executors import JOBS
from mattlib.features.array_folder import _damaged_mel_tracks, _prepare_mel_folder
from mattlib.features.kinds import KINDS, FeatureError, FeatureKind, feature_kind
from mattlib.features.mel import MelSettings, log_mel_torch, mel_filterbank
from mattlib.features.parallel import _chunks, _default_chunk, _local, _progress_bar, _run
from mattlib.features.stats import fma518_columns
from mattlib.features.store import (
    MANIFEST,
    DamagedCacheError,
    _check_manifest,
    _read_padded,
    _read_table,
    _write_failures,
    _write_features,
    _write_manifest,
)
from mattlib.features.workers import _work, _work_mel_audio
from mattlib.locks import folder_lock
from mattlib.registry import resolve

__all__ = ["KINDS", "ExtractionReport", "extract", "extract_subset", "extract_audio_dir"]


@dataclasses.dataclass
class ExtractionReport:
    """What one :func:`extract` run did.

    ``done``: computed in this run; ``reused``: already in the cache; ``failed``: could not be
    decoded (see ``failures.csv``); ``padded``: short clips zero-padded (mel: shorter than
    ``seconds``; fma518: shorter than one 2048-sample frame, listed in ``padded.csv``), counted
    over all stored tracks.
    """

    kind: str
    n_tracks: int
    done: int
    reused: int
    failed: int
    padded: int
    seconds: float
    jobs: int
    device: str
    paths: dict[str, str]

    @property
    def clips_per_s(self) -> float:
        """Tracks computed (``done``) per second of wall time (failures and reuse are quick)."""
        return self.done / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["clips_per_s"] = self.clips_per_s
        return d

    def __str__(self) -> str:
        line = (
            f"{self.kind}: {self.n_tracks} tracks: {self.done} computed, {self.reused} reused, "
            f"{self.failed} failed, {self.padded} padded; {self.seconds:.1f} s "
            f"({self.clips_per_s:.2f} clips/s, jobs={self.jobs}, {self.device})"
        )
        return line + (f"\n  {self.failures_line()}" if self.failed else "")

    def failures_line(self, first: int = 3) -> str:
        """Where the failed tracks are listed, and the first ``first`` of them with their reasons."""
        path = self.paths.get("failures", "")
        try:
            listed = pd.read_csv(path).head(first)
        except (OSError, ValueError, pd.errors.ParserError):
            return f"failures: {path}"
        shown = "; ".join(f"{t}: {str(e)[:80]}" for t, e in zip(listed["track_id"], listed["error"]))
        return f"failures listed in {path}, e.g. {shown}"


def _normalise_tracks(tracks) -> dict[int, Path]:
    if isinstance(tracks, pd.Series):
        items = tracks.items()
    elif isinstance(tracks, Mapping):
        items = tracks.items()
    elif isinstance(tracks, Iterable) and not isinstance(tracks, (str, bytes, os.PathLike)):
        items = tracks
    else:
        raise TypeError("tracks must be a mapping track_id -> path (or a Series, or (id, path) pairs)")
    out: dict[int, Path] = {}
    for item in items:
        try:
            tid, path = item
        except (TypeError, ValueError):
            raise TypeError(f"tracks: expected (track_id, path) pairs, got {item!r}") from None
        if isinstance(tid, bool) or not isinstance(tid, (int, np.integer)) or tid < 0:
            raise ValueError(f"track ids must be non-negative ints, got {tid!r}")
        if int(tid) in out:
            raise ValueError(f"duplicate track id {tid}")
        out[int(tid)] = Path(path)
    return dict(sorted(out.items()))


def extract(
    tracks: Mapping[int, str | os.PathLike] | pd.Series | Iterable[tuple[int, str | os.PathLike]],
    *,
    kind: str,
    out: str | os.PathLike,
    jobs: int = JOBS,
    settings: MelSettings | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    device: str | None = None,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """Extract features of many audio files into a cache folder (parallel, resumable).

    Parameters
    ----------
    tracks : mapping track_id -> path, Series, or iterable of (track_id, path)
        The audio files.  Track ids are non-negative ints.
    kind : str
        A key of :data:`mattlib.features.kinds.KINDS`: FMA's 518 statistics
        (``<out>/fma518/``) or log-mel spectrograms (``<out>/mel-<settings_id>/``).
    out : str or Path
        Cache folder.
    jobs : int >= 1
        Worker processes (decoding and CPU features).
    settings : MelSettings, optional
        The kind's settings (``kind="mel"`` only; default ``MelSettings()``).
    progress : bool
        Show a tqdm bar (tracks/s and ETA).
    chunk_size : int, optional
        Tracks per work unit, also the resume granularity (default 8 for fma518, 32 for mel,
        smaller for short lists).
    device : {"cpu", "cuda"}, optional
        Where mel spectrograms are computed: default CUDA (torch, batched per chunk) when
        available (:func:`log_mel_torch`), else :func:`log_mel` (numpy) inside the workers.
    repair : bool, default False
        A finished cache that no longer matches its ``manifest.json`` (a damaged or cut file)
        raises :class:`DamagedCacheError`; with ``repair`` the damaged part is re-extracted
        (mel: the damaged parts of rows; fma518: the whole table).
    executor : mattlib.executors.RayExecutor or LocalExecutor, optional
        A :class:`~mattlib.executors.RayExecutor` runs the chunks as Ray tasks instead of ``jobs``
        local processes; the results are written here exactly as locally (same files, same resume
        and failures). None or a :class:`~mattlib.executors.LocalExecutor` (what
        ``open_executor("local")`` gives): ``jobs`` local worker processes, which the extractor
        starts itself (its start method, one BLAS thread, the parent's pid).

    Returns
    -------
    ExtractionReport

    Notes
    -----
    Resuming: fma518 writes each finished chunk to ``parts/part-*.npz`` (atomically) and merges
    them with any previous ``features.csv`` at the end; mel writes rows into the preallocated
    ``mel.npy`` memmap and appends them to ``progress.csv`` after flushing, so a killed run
    recomputes only unfinished chunks.  Failed tracks are retried by a later run.  For fma518,
    ``features.csv`` keeps the tracks of earlier runs (the cache only grows).
    """
    spec = feature_kind(kind)
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise FeatureError(f"jobs must be an int >= 1, got {jobs!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise FeatureError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    settings_class = spec.settings_class()
    if settings_class is None and settings is not None:
        with_settings = [name for name, k in KINDS.items() if k.settings is not None]
        raise ValueError(f"settings apply to kind={' / '.join(map(repr, with_settings))} only")
    if settings is not None and not isinstance(settings, settings_class):
        raise TypeError(f"settings must be a {settings_class.__name__}, got {type(settings).__name__}")
    if _local(executor):
        jobs = _cap_jobs(int(jobs))
    tracks = _normalise_tracks(tracks)
    out = Path(out)
    common = dict(out=out, jobs=int(jobs), progress=progress, chunk_size=chunk_size, repair=repair, executor=executor)
    with folder_lock(out, what="feature cache"):  # one writer per cache
        if spec.storage == "table":
            return _extract_table(spec, tracks, **common)
        return _extract_array(
            spec, tracks, settings=settings or settings_class(), device=devices.resolve(device), **common
        )


def _cap_jobs(jobs: int) -> int:
    """``jobs`` worker processes, at most the CPUs this process may run on (saying so when capped):
    more workers than CPUs only share them, and each costs its start-up and memory."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if jobs > available:
        warnings.warn(f"jobs={jobs} capped at {available}, the CPUs this process may use", stacklevel=3)
        return available
    return jobs


def _extract_table(
    kind: FeatureKind,
    tracks: dict[int, Path],
    *,
    out: Path,
    jobs: int,
    progress: bool,
    chunk_size,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """A "table" kind: one row per track, resumable parts merged into FMA's 518-column layout."""
    t0 = time.perf_counter()
    folder = kind.folder(out)
    parts = folder / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    if (folder / "features.csv").exists():
        try:
            _check_manifest(folder)
        except DamagedCacheError:
            if not repair:
                raise
            for name in ("features.csv", "features.parquet", MANIFEST):
                (folder / name).unlink(missing_ok=True)  # re-extracted below

    # what is already finished: a previous merged table and/or parts of a killed run
    have: set[int] = set()
    if (folder / "features.csv").exists():
        have |= set(_read_table(folder).index.tolist())
    for part in sorted(parts.glob("part-*.npz")):
        with np.load(part) as z:
            have |= set(z["ids"].tolist())
    todo = [(tid, str(p)) for tid, p in tracks.items() if tid not in have]
    reused = len(tracks) - len(todo)
    failures: list[tuple[int, str, str]] = []
    done = 0

    def on_result(res):
        nonlocal done
        ok = [(tid, v, p) for tid, v, p, err in res if err is None]
        failures.extend((tid, str(tracks[tid]), err) for tid, v, p, err in res if err is not None)
        if ok:
            ids = np.array([t for t, _, _ in ok], dtype=np.int64)
            vals = np.stack([v for _, v, _ in ok]).astype(np.float32)
            padded = np.array([p for _, _, p in ok], dtype=bool)
            name = parts / f"part-{ids[0]:07d}-{uuid.uuid4().hex[:8]}.npz"

            def write(p: Path):
                with open(p, "wb") as fh:
                    np.savez(fh, ids=ids, values=vals, padded=padded)

            write_atomic(name, write)
            done += len(ok)

    chunk = chunk_size or _default_chunk(len(todo), jobs, kind.chunk)
    with _progress_bar(len(todo), kind.name, progress) as bar:
        _run(
            functools.partial(_work, kind=kind, settings=None),
            _chunks(todo, chunk),
            jobs=jobs,
            use_cuda=False,
            on_result=on_result,
            bar=bar,
            executor=executor,
        )

    # merge: previous table + all parts → features.csv / .parquet, then drop the parts
    frames = []
    padded = set(_read_padded(folder)) if (folder / "features.csv").exists() else set()
    if (folder / "features.csv").exists():
        frames.append(_read_table(folder))
    part_files = sorted(parts.glob("part-*.npz"))
    for part in part_files:
        with np.load(part) as z:
            frames.append(
                pd.DataFrame(z["values"], index=pd.Index(z["ids"], name="track_id"), columns=fma518_columns())
            )
            if "padded" in z.files:
                padded |= set(z["ids"][z["padded"]].tolist())
    table = pd.concat(frames) if frames else pd.DataFrame(columns=fma518_columns(), dtype=np.float32)
    table = table[~table.index.duplicated(keep="last")]
    _write_features(folder, table)
    padded &= set(table.index.tolist())
    write_atomic(folder / "padded.csv", lambda p: pd.DataFrame({"track_id": sorted(padded)}).to_csv(p, index=False))
    for part in part_files:
        part.unlink()
    _write_failures(folder / "failures.csv", failures)
    report = ExtractionReport(
        kind=kind.name,
        n_tracks=len(tracks),
        done=done,
        reused=reused,
        failed=len(failures),
        padded=len(padded),
        seconds=time.perf_counter() - t0,
        jobs=jobs,
        device="cpu",
        paths={
            "folder": str(folder),
            "features_csv": str(folder / "features.csv"),
            "features_parquet": str(folder / "features.parquet"),
            "failures": str(folder / "failures.csv"),
        },
    )
    write_json(folder / "report.json", report.to_dict(), default=str)
    _write_manifest(folder, ["features.csv", "features.parquet", "failures.csv", "padded.csv"])
    return report


def _extract_array(
    kind: FeatureKind,
    tracks: dict[int, Path],
    *,
    out: Path,
    jobs: int,
    settings,
    progress: bool,
    chunk_size,
    device: str,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """An "array" kind: one ``settings.shape`` float16 array per track in a preallocated memmap.

    The log-mel on CUDA is the one special case: workers decode, the parent computes batched.
    """
    t0 = time.perf_counter()
    folder = kind.folder(out, settings)
    track_ids = list(tracks)
    damaged = _damaged_mel_tracks(folder, repair=repair)
    done_rows = _prepare_mel_folder(folder, track_ids, settings, np.dtype(kind.dtype))
    for r, t in enumerate(track_ids):
        if t in damaged:
            done_rows.pop(r, None)  # re-extracted
    row_of = {t: r for r, t in enumerate(track_ids)}
    todo = [(t, str(tracks[t])) for r, t in enumerate(track_ids) if r not in done_rows]
    reused = len(track_ids) - len(todo)
    failures: list[tuple[int, str, str]] = []
    padded_flags = dict(done_rows)
    n_done = 0
    use_cuda = device.startswith("cuda") and kind.name == "mel"  # the log-mel's batched device path
    fb = mel_filterbank(settings) if use_cuda else None

    mm = np.load(folder / "mel.npy", mmap_mode="r+")
    prog_path = folder / "progress.csv"
    if prog_path.exists() and prog_path.stat().st_size and not prog_path.read_bytes().endswith(b"\n"):
        with open(prog_path, "a") as fh:  # a killed run may have left half a line: close it
            fh.write("\n")
    prog = open(prog_path, "a")

    def on_result(res):
        nonlocal n_done
        ok = [(t, v, p) for t, v, p, err in res if err is None]
        failures.extend((t, str(tracks[t]), err) for t, v, p, err in res if err is not None)
        if not ok:
            return
        if use_cuda:
            batch = np.stack([v for _, v, _ in ok])
            mels = log_mel_torch(batch, settings, device=device, fb=fb).cpu().numpy().astype(np.float16)
        elif kind.batch is not None:  # the workers prepared, the parent batches (any device)
            mels = resolve(kind.batch)([v for _, v, _ in ok], settings, device)
        else:
            mels = [v for _, v, _ in ok]
        lines = []
        for (t, _, p), m in zip(ok, mels):
            r = row_of[t]
            mm[r] = m
            padded_flags[r] = bool(p)
            lines.append(f"{r},{t},{int(p)}\n")
        mm.flush()  # data first, then the claim that it is there
        prog.write("".join(lines))
        prog.flush()
        os.fsync(prog.fileno())
        n_done += len(ok)

    if kind.batch is not None and todo:
        resolve(kind.batch)([], settings, device)  # e.g. the network's weights: one line, before any worker
    chunk = chunk_size or _default_chunk(len(todo), jobs, kind.chunk)
    if use_cuda:
        fn = functools.partial(_work_mel_audio, settings=settings)
    elif kind.prepare is not None:
        fn = functools.partial(_work, kind=dataclasses.replace(kind, compute=kind.prepare), settings=settings)
    else:
        fn = functools.partial(_work, kind=kind, settings=settings)
    try:
        with _progress_bar(len(todo), f"{kind.name} {settings.settings_id}", progress) as bar:
            _run(
                fn,
                _chunks(todo, chunk),
                jobs=jobs,
                use_cuda=use_cuda or (kind.batch is not None and device.startswith("cuda")),  # never fork CUDA
                on_result=on_result,
                bar=bar,
                executor=executor,
            )
    finally:
        prog.close()
        mm.flush()
        mm = None  # release the memory map (on_result is never called after this)

    failed_ids = {t for t, _, _ in failures}
    index = pd.DataFrame(
        {
            "row": np.arange(len(track_ids)),
            "track_id": track_ids,
            "padded": [bool(padded_flags.get(r, False)) for r in range(len(track_ids))],
            "status": ["failed" if t in failed_ids else "ok" for t in track_ids],
        }
    )
    _write_failures(folder / "failures.csv", failures)
    write_atomic(folder / "index.csv", lambda p: index.to_csv(p, index=False))  # completion marker
    report = ExtractionReport(
        kind=kind.name,
        n_tracks=len(track_ids),
        done=n_done,
        reused=reused,
        failed=len(failures),
        padded=int(index.loc[index["status"] == "ok", "padded"].sum()),
        seconds=time.perf_counter() - t0,
        jobs=jobs,
        device=device,
        paths={
            "folder": str(folder),
            "mel": str(folder / "mel.npy"),
            "index": str(folder / "index.csv"),
            "failures": str(folder / "failures.csv"),
        },
    )
    write_json(folder / "report.json", {**report.to_dict(), "settings_id": settings.settings_id}, default=str)
    _write_manifest(
        folder, ["index.csv", "layout.json", "failures.csv"], mel=np.load(folder / "mel.npy", mmap_mode="r")
    )
    return report


def extract_subset(
    root: str | os.PathLike,
    *,
    subset: str,
    kind: str,
    out: str | os.PathLike,
    jobs: int = JOBS,
    settings: MelSettings | None = None,
    progress: bool = True,
    device: str | None = None,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """Extract features of every track of a dataset root: an FMA subset (``subset`` and smaller
    ones) or a collection (``collection.csv``; ``subset`` is ignored), whichever is at ``root``.

    FMA audio is looked up as ``<root>/fma_<subset>/XXX/XXXXXX.mp3`` (the subset's own folder
    holds the smaller subsets' clips too, as FMA distributes them).  See :func:`extract`.
    """
    from mattlib.data.datasets import open_dataset

    feature_kind(kind)  # an unknown kind fails before the audio is listed
    paths = open_dataset(root).audio_paths(subset=subset)
    return extract(
        paths,
        kind=kind,
        out=out,
        jobs=jobs,
        settings=settings,
        progress=progress,
        device=device,
        repair=repair,
        executor=executor,
    )


def extract_audio_dir(
    audio_dir: str | os.PathLike,
    *,
    kind: str,
    out: str | os.PathLike,
    jobs: int = JOBS,
    settings: MelSettings | None = None,
    progress: bool = True,
    device: str | None = None,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """Extract features of every ``*.mp3`` below a folder; track id = ``int(file stem)``.

    Files whose stem is not an integer are skipped with a warning.  See :func:`extract`.
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder not found: {audio_dir}")
    feature_kind(kind)  # an unknown kind fails before the audio is listed
    paths: dict[int, Path] = {}
    skipped = []
    for p in sorted(audio_dir.rglob("*.mp3")):
        if p.stem.isdigit():
            if int(p.stem) in paths:
                raise FeatureError(f"two files with track id {int(p.stem)}: {paths[int(p.stem)]} and {p}")
            paths[int(p.stem)] = p
        else:
            skipped.append(p.name)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} mp3 files without an integer name: {skipped[:5]}", stacklevel=2)
    if not paths:
        raise FeatureError(f"no *.mp3 files with integer names below {audio_dir}")
    return extract(
        paths,
        kind=kind,
        out=out,
        jobs=jobs,
        settings=settings,
        progress=progress,
        device=device,
        repair=repair,
        executor=executor,
    )
