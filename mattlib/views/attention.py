"""Attention you can judge: every pooling's weights for one bag, three views of them, entropy.

Reads the ``attention.json`` files of a finished run (no training): one per bag model cell
(:func:`mattlib.study.experiment.attention_records`). For a test bag, :func:`side_by_side_figure`
shows the weights each bag model gives its tracks -- mean pooling (uniform by construction), max
pooling (the share of embedding dimensions each track wins), MATT under the true and the
predicted genre's query, MATT (bilinear), gated attention -- with each model's prediction.

Views (``view``):

``softmax``
    the weights, summing to one over the bag;
``raw``
    the scores ``e_k`` behind them, centred over the bag (softmax ignores a constant shift);
``min-max``
    the raw scores scaled to [0, 1] within the bag, readable when weights are near-uniform.

:func:`entropy_table` gives each bag's attention entropy divided by ``log(bag size)`` (1 = uniform,
0 = one track takes all); :func:`entropy_figure` plots it against bag size per pooling, so a reader
sees whether a model attends at all. Paper-form MATT's weights stay within a factor e² of each
other, which keeps its entropy near 1 in large bags.

Where the truth is known (the planted demo's ``marked`` tracks, :mod:`mattlib.data.planted`),
:func:`recovery` scores each pooling's weights (the true genre's query for MATT) against it: the
per-bag AUC of weights vs the tracks that carry the genre (bags holding both kinds; 0.5 = chance)
and the share of weight on them minus the uniform share (0 = chance), each with an album-bootstrap
interval (a test bag is one album).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.views import runs

__all__ = [
    "VIEWS",
    "load_attention",
    "bag_weights",
    "entropy",
    "entropy_table",
    "entropy_figure",
    "side_by_side_figure",
    "recovery",
    "recovery_table",
]

VIEWS = ("softmax", "raw", "min-max")


def load_attention(run_dir: str | Path, *, cells: Iterable[str | Path] | None = None, feature_set: str = "all") -> dict:
    """``{model label: attention.json}`` of the bag models of one feature set (lowest seed each)."""
    found: dict[str, tuple[int, dict]] = {}
    for metrics in runs.metrics_files(run_dir, cells):
        path = metrics.parent / "attention.json"
        data = json.loads(metrics.read_text())
        if not path.exists() or data.get("feature_set") != feature_set:
            continue
        attention = json.loads(path.read_text())
        seed = int(data.get("seed", 0))
        label = attention["model"]
        if data.get("notebook", "").startswith("07") or (label in found and found[label][0] <= seed):
            continue
        found[label] = (seed, attention)
    return {label: attention for label, (_, attention) in sorted(found.items())}


def bag_weights(bag: dict, query: str | None = None, *, view: str = "softmax") -> np.ndarray:
    """One bag's weights per track in a view of :data:`VIEWS`, for ``query`` (a genre; MATT
    only, default the predicted genre's)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; valid: {', '.join(VIEWS)}")
    queries = bag["queries"]
    row = queries.index(query or bag["pred_genre"]) if (query or bag["pred_genre"]) in queries else 0
    weights = np.asarray(bag["attention"][row], dtype=float)
    if view == "softmax":
        return weights
    raw = np.asarray(bag["raw"][row], dtype=float) if "raw" in bag else _centred_log(weights)
    if view == "raw":
        return raw
    span = raw.max() - raw.min()
    return (raw - raw.min()) / span if span > 1e-9 else np.full_like(raw, 0.5)


def _centred_log(weights: np.ndarray) -> np.ndarray:
    logw = np.log(np.clip(weights, 1e-12, None))
    return logw - logw.mean()


def entropy(weights) -> float:
    """Attention entropy over a bag divided by log(bag size): 1 uniform, 0 one track; NaN for a
    bag of one.

    Examples
    --------
    >>> entropy([0.25, 0.25, 0.25, 0.25]), entropy([1.0, 0.0])
    (1.0, 0.0)
    """
    w = np.asarray(weights, dtype=float)
    if len(w) < 2:
        return float("nan")
    w = w / w.sum()
    nz = w[w > 0]
    return float(round(-(nz * np.log(nz)).sum() / np.log(len(w)), 12)) + 0.0  # + 0.0: never -0.0


def entropy_table(models: dict, *, split: str = "test") -> pd.DataFrame:
    """One row per (model, bag of at least two tracks): ``size``, ``entropy`` (the predicted
    genre's query for MATT), ``correct``."""
    rows = []
    for label, data in models.items():
        for bag in data["bags"]:
            if bag.get("split", split) != split or len(bag["tracks"]) < 2:
                continue
            rows.append(
                {
                    "model": label,
                    "bag_id": bag["bag_id"],
                    "size": len(bag["tracks"]),
                    "entropy": entropy(bag_weights(bag)),
                    "correct": bag["pred_genre"] == bag["true_genre"],
                }
            )
    return pd.DataFrame(rows, columns=["model", "bag_id", "size", "entropy", "correct"])


def entropy_figure(table: pd.DataFrame):
    """Normalised attention entropy against bag size, one colour per pooling (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    rng = np.random.default_rng(0)
    for label, group in table.groupby("model", sort=True):
        fig.add_trace(
            go.Scatter(
                x=group["size"] + rng.uniform(-0.2, 0.2, len(group)),
                y=group["entropy"],
                mode="markers",
                name=label,
                text=group["bag_id"],
                hovertemplate="%{text}: %{y:.3f} (size %{x:.0f})<extra>" + label + "</extra>",
                marker=dict(size=6, opacity=0.7),
            )
        )
    fig.add_hline(y=1.0, line_dash="dot", annotation_text="uniform")
    fig.update_layout(
        title="Attention entropy / log(bag size) against bag size, test bags (1 = uniform)",
        xaxis_title="tracks in the bag",
        yaxis=dict(title="normalised entropy", range=[-0.02, 1.05]),
        height=380,
    )
    return fig


def side_by_side_figure(models: dict, bag_id: str, *, view: str = "softmax"):
    """Every bag model's weights over the tracks of one bag, in one view (plotly): one panel per
    model, MATT's true and predicted genre's queries side by side; titles give each model's
    prediction and its top genre scores."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    bags = {label: next((b for b in data["bags"] if b["bag_id"] == bag_id), None) for label, data in models.items()}
    bags = {label: bag for label, bag in bags.items() if bag is not None}
    if not bags:
        raise ValueError(f"no bag model of this run has test bag {bag_id!r}")
    titles = []
    for label, bag in bags.items():
        classes = models[label]["classes"]
        top = np.argsort(bag["scores"])[::-1][:2]
        scores = ", ".join(f"{classes[i]} {bag['scores'][i]:.2f}" for i in top)
        titles.append(f"{label}: predicts {bag['pred_genre']} ({scores})")
    fig = make_subplots(rows=len(bags), cols=1, subplot_titles=titles, shared_xaxes=True, vertical_spacing=0.08)
    for row, (_, bag) in enumerate(bags.items(), start=1):
        tracks = [f"{t} ({g})" for t, g in zip(bag["tracks"], bag["track_genres"])]
        queries = [bag["true_genre"], bag["pred_genre"]] if len(bag["queries"]) > 1 else [None]
        for query, colour in zip(dict.fromkeys(queries), ("#4C72B0", "#C44E52")):
            name = "weights" if query is None else f"query {query}"
            fig.add_trace(
                go.Bar(
                    x=tracks, y=bag_weights(bag, query, view=view), name=name, marker_color=colour, showlegend=False
                ),
                row=row,
                col=1,
            )
    first = next(iter(bags.values()))
    fig.update_layout(
        title=f"Bag {bag_id} (true {first['true_genre']}): every pooling's {view} weights "
        "(MATT: blue = true genre's query, red = predicted genre's)",
        barmode="group",
        height=170 * len(bags) + 120,
        margin=dict(t=90, b=60),
    )
    return fig


def recovery(bags: list[dict], carries: pd.Series, *, n_boot: int = 1000) -> dict[str, dict]:
    """How well one model's attention finds the tracks that carry the genre.

    Parameters
    ----------
    bags : list of dict
        ``attention.json`` bags (test bags; bags of one track are skipped).
    carries : pandas.Series of bool
        ``track_id -> True`` where the track carries its album's genre.
    n_boot : int
        Album-bootstrap replicates.

    Returns
    -------
    dict
        ``{"auc": {...}, "share_above_uniform": {...}}``, each ``{"mean", "ci_low", "ci_high",
        "bags"}`` (None where no bag qualifies).

    Examples
    --------
    >>> bag = {"tracks": [1, 2], "queries": ["bag"], "true_genre": "Rock", "attention": [[0.9, 0.1]]}
    >>> r = recovery([bag] * 12, pd.Series({1: True, 2: False}), n_boot=50)
    >>> r["auc"]["mean"], round(r["share_above_uniform"]["mean"], 2)
    (1.0, 0.4)
    """
    from mattlib.evaluation import uncertainty

    aucs, shares = [], []
    for bag in bags:
        flags = carries.reindex(bag["tracks"]).fillna(False).to_numpy(dtype=bool)
        if len(flags) < 2:
            continue
        weights = bag_weights(bag, bag["true_genre"])
        shares.append(weights[flags].sum() - flags.mean())
        if 0 < flags.sum() < len(flags):
            pos, neg = weights[flags], weights[~flags]
            aucs.append((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
    out = {}
    for name, values in (("auc", aucs), ("share_above_uniform", shares)):
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            out[name] = {"mean": None, "ci_low": None, "ci_high": None, "bags": 0}
            continue
        counts = uncertainty.album_counts(len(values), n_boot=n_boot, seed=0)
        low, high = uncertainty.interval(counts @ values / len(values))
        out[name] = {"mean": float(values.mean()), "ci_low": low, "ci_high": high, "bags": int(values.size)}
    return out


def recovery_table(models: dict, carries: pd.Series, *, n_boot: int = 1000) -> pd.DataFrame:
    """:func:`recovery` of every model's test bags, one row per (model, score)."""
    rows = []
    for label, data in models.items():
        test = [b for b in data["bags"] if b.get("split", "test") == "test"]
        for score, r in recovery(test, carries, n_boot=n_boot).items():
            rows.append({"model": label, "score": score, **r})
    return pd.DataFrame(rows, columns=["model", "score", "mean", "ci_low", "ci_high", "bags"])
