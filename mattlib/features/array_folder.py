"""The folder of an array kind (``mel.npy``, a preallocated float16 memmap of one row per track):
preparing or re-laying it out for a track list, the rows finished by earlier runs
(``progress.csv``), and the damaged rows of a finished store to re-extract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mattlib.atomic import write_atomic, write_json
from mattlib.features.store import (
    MANIFEST,
    DamagedCacheError,
    _check_manifest,
    _damaged_mel_rows,
    _fix,
)


def _read_progress(path: Path, track_ids: list[int]) -> dict[int, bool]:
    """Rows finished by earlier runs: row -> padded.  Lines that do not match the layout (e.g. a
    half-written last line of a killed run) are ignored."""
    done: dict[int, bool] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        row, tid, padded = int(parts[0]), parts[1], parts[2]
        if row < len(track_ids) and tid.isdigit() and int(tid) == track_ids[row] and padded in ("0", "1"):
            done[row] = padded == "1"
    return done


def _prepare_mel_folder(folder: Path, track_ids: list[int], settings, dtype=np.float16) -> dict[int, bool]:
    """Create or reuse ``mel.npy`` for exactly ``track_ids``; returns finished rows (row -> padded).

    A previous store with the same settings but another track list is re-laid out, copying the
    rows that can be reused.
    """
    folder.mkdir(parents=True, exist_ok=True)
    layout_path, mel_path, prog_path = folder / "layout.json", folder / "mel.npy", folder / "progress.csv"
    shape = (len(track_ids), *settings.shape)
    old_layout = json.loads(layout_path.read_text()) if layout_path.exists() else None
    # the completion marker goes first: from now on the folder is "in progress"
    for marker in (MANIFEST, "index.csv"):
        (folder / marker).unlink(missing_ok=True)

    if old_layout and mel_path.exists() and old_layout.get("settings") == settings.to_dict():
        old_ids = old_layout["track_ids"]
        old_done = _read_progress(prog_path, old_ids)
        if old_ids == track_ids:
            mm = np.load(mel_path, mmap_mode="r")
            if mm.shape == shape and mm.dtype == np.dtype(dtype):
                return old_done
        # re-layout: copy finished rows of tracks we still want
        old_mm = np.load(mel_path, mmap_mode="r")
        pos = {t: r for r, t in enumerate(track_ids)}
        keep = {pos[old_ids[r]]: (r, p) for r, p in old_done.items() if old_ids[r] in pos}
        if prog_path.exists():
            prog_path.unlink()

        def write(p: Path):
            new = np.lib.format.open_memmap(p, mode="w+", dtype=dtype, shape=shape)
            for new_row, (old_row, _) in sorted(keep.items()):
                new[new_row] = old_mm[old_row]
            new.flush()
            del new

        write_atomic(mel_path.with_suffix(".npy"), write)
        del old_mm
        write_json(
            layout_path, {"settings": settings.to_dict(), "track_ids": track_ids, "shape": list(shape)}, default=str
        )
        lines = "".join(f"{r},{track_ids[r]},{int(p)}\n" for r, (_, p) in sorted(keep.items()))
        write_atomic(prog_path, lambda p: p.write_text(lines))
        return {r: p for r, (_, p) in keep.items()}

    # fresh store
    for p in (prog_path, layout_path):
        if p.exists():
            p.unlink()

    def write(p: Path):
        new = np.lib.format.open_memmap(p, mode="w+", dtype=dtype, shape=shape)
        new.flush()
        del new
        # reserve the disk space now: a full disk is an OSError here, not a Bus error later
        fd = os.open(p, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    write_atomic(mel_path, write)
    write_json(layout_path, {"settings": settings.to_dict(), "track_ids": track_ids, "shape": list(shape)}, default=str)
    return {}


def _damaged_mel_tracks(folder: Path, *, repair: bool) -> set[int]:
    """Track ids whose stored log-mel no longer matches the manifest of a finished extraction.

    Without ``repair`` a damaged store raises :class:`DamagedCacheError`; with it, the damaged
    tracks are returned (a store cut short is removed whole) and re-extracted.
    """
    if not (folder / MANIFEST).exists():
        return set()  # nothing finished yet (or a killed run: resumed from progress.csv)
    try:
        manifest = _check_manifest(folder)
        rows = _damaged_mel_rows(folder, manifest)
        if rows and not repair:
            raise DamagedCacheError(f"{folder / 'mel.npy'}: {len(rows)} rows differ from {MANIFEST}; {_fix(folder)}")
    except DamagedCacheError:
        if not repair:
            raise
        for name in ("mel.npy", "layout.json", "progress.csv", "index.csv", MANIFEST):
            (folder / name).unlink(missing_ok=True)
        return set()
    ids = json.loads((folder / "layout.json").read_text())["track_ids"]
    return {ids[r] for r in rows}
