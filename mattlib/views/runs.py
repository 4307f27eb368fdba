"""A run's reported models, grouped by configuration, with every seed's per-track test scores.

A *model* of the report is one configuration (feature set, label, evaluation and every training
parameter) over its seeds. Cells that differ in anything but the seed (``lr``, ``epochs``,
``class_weights`` ...) are different models, never extra seeds of one; their labels then name
what differs ("MLP+MATT [lr=0.003]"). Two cells claiming the same configuration and seed are an
error naming both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.errors import MattError
from mattlib.evaluation.results import METRICS_FILE, TEST_SCORES_FILE

__all__ = [
    "ModelScores",
    "ReportError",
    "check_run_folder",
    "configuration",
    "leakage_lines",
    "load_scores",
    "metrics_files",
    "run_context",
]

_SCORE_META = ("track_id", "bag_id", "genre", "bag_genre", "album", "label", "evaluation", "seed")


class ReportError(MattError, ValueError):
    """A run's results cannot be reported as they are; the message says which cells and why."""


def metrics_files(run_dir: str | Path, cells: Iterable[str | Path] | None = None) -> list[Path]:
    """The ``metrics.json`` files the report reads: those of ``cells`` (cell folders), or every
    ``<notebook>/<cell>/metrics.json`` of the run."""
    if cells is None:
        return sorted(Path(run_dir).glob(f"*/*/{METRICS_FILE}"))
    return sorted(Path(c) / METRICS_FILE for c in cells if (Path(c) / METRICS_FILE).exists())


def leakage_lines(run_dir: Path, cells: list[Path] | None) -> list[str]:
    """The distinct leakage lines the run's cells recorded (``metrics.json`` ``leakage``)."""
    found = (json.loads(p.read_text()).get("leakage") for p in metrics_files(run_dir, cells))
    return sorted({line for line in found if line})


def check_run_folder(run_dir: Path, cells: list[Path] | None) -> None:
    """One line unless ``run_dir`` is a run folder holding at least one finished cell."""
    if run_dir.is_file():
        raise ReportError(f"{run_dir} is a file; give a run folder (outputs/<run>, made by matt run)")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if metrics_files(run_dir, cells):
        return
    inner = sorted({p.parent.parent.parent.name for p in run_dir.glob(f"*/*/*/{METRICS_FILE}")})
    if inner:
        raise ReportError(
            f"{run_dir} holds runs, not cells: give one of them ({', '.join(str(run_dir / r) for r in inner)})"
        )
    started = sorted(p.name for p in run_dir.glob("[0-9][0-9]_*") if p.is_dir())
    found = f"notebook folders {', '.join(started)} but no finished cell" if started else "no finished cell"
    raise ReportError(f"{run_dir}: {found} (no */*/{METRICS_FILE}); run: matt run params/<file>.yaml first")


def configuration(data: dict, entry: dict) -> dict:
    """Everything that defines a reported model except its seed (a ``metrics.json`` and one of
    its ``results`` entries)."""
    params = {k: v for k, v in (data.get("params") or {}).items() if k != "seed"}
    return {
        "feature_set": entry.get("feature_set"),
        "label": entry.get("label"),
        "evaluation": entry.get("evaluation", "bags"),
        **{f"param {k}": v for k, v in sorted(params.items())},
    }


def disambiguate(rows: list[dict]) -> None:
    """Give each configuration a label of its own, in place: where several configurations share
    (feature set, label, evaluation), append the parameters in which they differ; and refuse two
    cells of one configuration and seed."""
    seen: dict[tuple, str] = {}
    for row in rows:
        key = (row["config"], row["seed"])
        if key in seen:
            raise ReportError(
                f"two cells report {row['label']} [{row['feature_set']}] with the same configuration and "
                f"seed {row['seed']}: {seen[key]} and {row['path']}; remove one (or rerun with other seeds)"
            )
        seen[key] = row["path"]
    groups: dict[tuple, set[str]] = {}
    for row in rows:
        groups.setdefault((row["feature_set"], row["label"], row["evaluation"]), set()).add(row["config"])
    for row in rows:
        configs = groups[(row["feature_set"], row["label"], row["evaluation"])]
        if len(configs) < 2:
            continue
        mine = json.loads(row["config"])
        others = [json.loads(c) for c in configs if c != row["config"]]
        differing = sorted({k for o in others for k in set(o) | set(mine) if o.get(k) != mine.get(k)})
        row["label"] += " [" + ", ".join(f"{k.removeprefix('param ')}={mine.get(k)}" for k in differing) + "]"


def run_context(run_dir: str | Path, cells: Iterable[str | Path] | None = None) -> dict:
    """Genres, training counts, tail sets and frequency groups of a run (from its first model
    cell); ``{}`` when it has none."""
    for path in metrics_files(run_dir, cells):
        data = json.loads(path.read_text())
        for entry in data.get("results") or []:
            summary = entry.get("summary") or {}
            if "tail_sets" in summary:
                counts = data.get("train_counts") or {}
                return {
                    "classes": list(counts),
                    "train_counts": counts,
                    "tail_sets": {k: v for k, v in summary["tail_sets"].items() if not k.startswith("paper")},
                    "paper_tail_sets": {k: v for k, v in summary["tail_sets"].items() if k.startswith("paper")},
                    "groups": summary.get("groups") or {},
                }
    return {}


@dataclass
class ModelScores:
    """Every seed's test scores of one reported model, on one ordered set of test tracks.

    Attributes
    ----------
    feature_set, label, evaluation : str
    seeds : list of int
    scores : (n_seeds, n_tracks, C) float
        The score the model gave each track (a bag model's bag scores on each of its tracks).
    tracks : DataFrame (n_tracks rows)
        ``track_id``, ``bag_id``, ``genre``, ``bag_genre``, ``album``, in the same order as the
        second axis of ``scores``.
    classes : list of str
    """

    feature_set: str
    label: str
    evaluation: str
    seeds: list[int]
    scores: np.ndarray
    tracks: pd.DataFrame
    classes: list[str]

    def on(self, track_ids: np.ndarray) -> np.ndarray:
        """(n_seeds, len(track_ids), C) scores of the given tracks, in that order."""
        position = pd.Index(self.tracks["track_id"]).get_indexer(track_ids)
        if (position < 0).any():
            raise ReportError(f"{self.label} [{self.feature_set}] has no test scores for some compared tracks")
        return self.scores[:, position]


def load_scores(frame: pd.DataFrame) -> dict[tuple[str, str, str], ModelScores]:
    """Per (feature set, label, evaluation) of :func:`mattlib.views.report.collect`'s table, the
    model's test scores over its seeds (cells without ``test_scores.csv`` are skipped)."""
    out: dict[tuple[str, str, str], ModelScores] = {}
    if frame.empty or "path" not in frame:
        return out
    cache: dict[Path, pd.DataFrame] = {}
    for key, group in frame.groupby(["feature_set", "label", "evaluation"], sort=False):
        seeds, arrays, tracks, classes = [], [], None, None
        for _, row in group.sort_values("seed").iterrows():
            path = Path(row["path"]).parent / TEST_SCORES_FILE
            if not path.exists():
                continue
            if path not in cache:
                cache[path] = pd.read_csv(path, dtype={"album": str, "bag_id": str})
            table = cache[path]
            mine = table[(table["label"] == row["source_label"]) & (table["evaluation"] == row["evaluation"])]
            if mine.empty:
                continue
            mine = mine.sort_values("track_id", kind="stable")
            genre_columns = [c for c in table.columns if c not in _SCORE_META]
            if tracks is None:
                tracks = mine[list(_SCORE_META[:5])].reset_index(drop=True)
                classes = genre_columns
            elif not np.array_equal(mine["track_id"].to_numpy(), tracks["track_id"].to_numpy()):
                raise ReportError(f"{row['path']}: its test tracks differ from the other seeds' of {key[1]}")
            seeds.append(int(row["seed"]))
            arrays.append(mine[genre_columns].to_numpy(dtype=np.float64))
        if arrays:
            out[key] = ModelScores(
                feature_set=key[0],
                label=key[1],
                evaluation=key[2],
                seeds=seeds,
                scores=np.stack(arrays),
                tracks=tracks,
                classes=list(classes),
            )
    return out
