"""A grid cell's folder: whether its result is finished, where it runs, how a result is published.

A cell runs in ``<run>/.attempts/<notebook>/<cell-id>/`` (:func:`attempt_dir`), which replaces
``<run>/<notebook>/<cell-id>/`` only when it succeeded. A cell whose ``metrics.json`` exists and
that ran with the current parameters, notebook source and mattlib code (``params.yaml``,
``source.sha1``, ``code.sha1`` beside it) is finished (:func:`cell_status`). :func:`check_inputs`
checks, once before a run, what its cells will read and write.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from mattlib.evaluation.results import METRICS_FILE
from mattlib.provenance import code_digest
from mattlib.runner.spec import _RUNNER_KEYS, NOTEBOOK_DIR, Cell, GridError

__all__ = ["attempt_dir", "cell_status", "is_finished", "check_inputs"]


def _source_digest(notebook: Path) -> str:
    import hashlib

    return hashlib.sha1(Path(notebook).read_bytes()).hexdigest()


def attempt_dir(cell: Cell) -> Path:
    """Where a cell runs before its result replaces the last good one:
    ``<run>/.attempts/<notebook>/<cell-id>/`` (kept after a failure or a kill, so a re-run resumes
    its training checkpoint and the failure can be read)."""
    return cell.output_dir.parent.parent / ".attempts" / cell.output_dir.parent.name / cell.output_dir.name


def _identity(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that shape a cell's result: the runner's paths excluded, so a finished run
    folder that is moved or copied still counts as finished."""
    return {k: v for k, v in params.items() if k not in _RUNNER_KEYS}


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def cell_status(cell: Cell, *, notebook_dir: Path = NOTEBOOK_DIR) -> str:
    """``"finished"``, ``"new"`` (no result yet), or why the result is stale: ``"parameters"``,
    ``"notebook"`` (its source was edited) or ``"code"`` (the mattlib package changed)."""
    _recover(cell)
    folder = cell.output_dir
    if not (folder / METRICS_FILE).exists():
        return "new"
    try:
        saved = yaml.safe_load((folder / "params.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "parameters"
    if not isinstance(saved, dict) or _identity(saved) != _identity(cell.params):
        return "parameters"
    if _read_text(folder / "source.sha1") != _source_digest(Path(notebook_dir) / cell.notebook):
        return "notebook"
    if _read_text(folder / "code.sha1") != code_digest():
        return "code"
    return "finished"


def is_finished(cell: Cell, *, notebook_dir: Path = NOTEBOOK_DIR) -> bool:
    """A cell is finished when its metrics.json exists and it ran with the same parameters, the
    same notebook source and the same mattlib code."""
    return cell_status(cell, notebook_dir=notebook_dir) == "finished"


def _recover(cell: Cell) -> None:
    """Finish a swap that a kill interrupted (the last good result was set aside, not replaced)."""
    old = _set_aside(cell)
    if old.exists() and not cell.output_dir.exists():
        os.replace(old, cell.output_dir)


def _set_aside(cell: Cell) -> Path:
    return attempt_dir(cell).with_name(cell.output_dir.name + ".old")


def _publish(cell: Cell, attempt: Path) -> None:
    """Replace the cell's result by a successful attempt (two renames; the old one goes last)."""
    old = _set_aside(cell)
    shutil.rmtree(old, ignore_errors=True)
    cell.output_dir.parent.mkdir(parents=True, exist_ok=True)
    if cell.output_dir.exists():
        os.replace(cell.output_dir, old)
    os.replace(attempt, cell.output_dir)
    shutil.rmtree(old, ignore_errors=True)


def check_inputs(cells: list[Cell]) -> None:
    """Check, once, what the cells will read and write: each ``data_root`` holds readable, complete
    metadata (FMA's, or a collection's, whose counts are printed) with labelled tracks and a split
    that does not leak (unless a cell allows it); each ``cache_dir`` and output folder can be written.

    Raises
    ------
    GridError
        One line naming the path and what to do.
    """
    from mattlib.data import bags, datasets, fma

    roots = {
        (c.params["data_root"], c.params.get("dataset", "auto"), c.params.get("subset", "medium"))
        for c in cells
        if "data_root" in c.params
    }
    allowed = {c.params["data_root"] for c in cells if c.params.get("allow_leakage")}
    for root, kind, subset in sorted(roots):
        try:
            if not Path(root).is_dir() or (datasets.detect_dataset(root) if kind == "auto" else kind) == "fma":
                fma.check_metadata(root)  # names a missing file before it is parsed
            source = datasets.open_dataset(root, dataset=kind)
            membership = bags.make_bags(source.tracks(subset=subset))
        except fma.FMADataError as err:
            raise GridError(f"data_root {root}: {err}") from None
        if membership.empty:
            raise GridError(
                f"data_root {root}: no labelled tracks in subset {subset!r} (a track needs a top genre and a "
                "split); check its genre column (genre_top for FMA)"
            )
        if isinstance(source, datasets.CollectionDataset):  # no record to check it against: say what was read
            print(
                f"collection {root}: {len(membership)} labelled tracks, {membership['bag_id'].nunique()} bags, "
                f"{membership['genre'].nunique()} genres"
            )
        if root not in allowed:
            try:
                bags.assert_no_leakage(membership, where=f"data_root {root}")
            except bags.LeakageError as err:
                raise GridError(str(err)) from None
    writable = {c.params["cache_dir"] for c in cells if "cache_dir" in c.params}
    writable |= {str(c.output_dir.parent.parent) for c in cells}
    for folder in sorted(writable):
        _check_writable(Path(folder))


def _check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GridError(f"{folder}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GridError(f"{folder}: no permission to write in {existing}; choose a writable path")
