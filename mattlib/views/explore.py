"""Data exploration (notebook 01): genre long tail, splits, bags, leakage audit.

Each function returns a table or a figure, so the notebook stays a sequence of calls.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mattlib.data import bags as bagging

__all__ = ["genre_split_counts", "plot_long_tail", "plot_bag_sizes", "exploration_metrics"]

_SPLITS = ["training", "validation", "test"]


def genre_split_counts(membership: pd.DataFrame) -> pd.DataFrame:
    """Tracks per genre (rows, largest training count first) and split (columns) + ``total``."""
    counts = membership.groupby(["genre", "split"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=[s for s in _SPLITS if s in counts.columns], fill_value=0)
    counts["total"] = counts.sum(axis=1)
    sort_by = "training" if "training" in counts.columns else "total"
    return counts.sort_values(sort_by, ascending=False)


def plot_long_tail(
    counts: pd.DataFrame,
    *,
    tail_sets: dict[str, list[str]],
    thresholds: tuple[float, ...] = (100, 200),
    title: str = "Tracks per genre",
) -> plt.Figure:
    """Bar chart (log scale) of tracks per genre and split, tail genres marked.

    Parameters
    ----------
    counts : pandas.DataFrame
        From :func:`genre_split_counts`.
    tail_sets : dict
        ``{"<100": [...], "<200": [...]}`` computed from the training counts.
    thresholds : tuple of float
        The training-count thresholds of the tail sets (dashed lines).
    """
    splits = [s for s in _SPLITS if s in counts.columns]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    x = np.arange(len(counts))
    width = 0.8 / max(len(splits), 1)
    colours = {"training": "#4C72B0", "validation": "#DD8452", "test": "#55A868"}
    for i, split in enumerate(splits):
        ax.bar(
            x + (i - (len(splits) - 1) / 2) * width,
            counts[split].clip(lower=0.8),
            width,
            label=split,
            color=colours[split],
        )
    ax.set_yscale("log")
    ax.set_xticks(x, counts.index, rotation=40, ha="right")
    ax.set_ylabel("tracks (log scale)")
    ax.set_title(title)
    markers = sorted(tail_sets.items(), key=lambda kv: len(kv[1]))
    shades = ["#f4cccc", "#fde9d9"]
    for (name, genres), shade in zip(reversed(markers), shades):
        for pos, genre in enumerate(counts.index):
            if genre in genres:
                ax.axvspan(pos - 0.45, pos + 0.45, color=shade, zorder=0)
        ax.bar([np.nan], [np.nan], color=shade, label=f"tail {name} training tracks")
    for threshold in thresholds:
        ax.axhline(threshold, color="grey", lw=0.8, ls="--")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_bag_sizes(membership: pd.DataFrame) -> plt.Figure:
    """Histogram of bag sizes per split and label purity of test bags."""
    table = bagging.bag_table(membership)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    sizes = table.groupby(["size", "split"]).size().unstack(fill_value=0)
    sizes = sizes.reindex(columns=[s for s in _SPLITS if s in sizes.columns])
    sizes.plot.bar(ax=axes[0], width=0.85)
    axes[0].set_xlabel("tracks per bag")
    axes[0].set_ylabel("bags")
    axes[0].set_title("Bag sizes (album, artist)")
    test = table[table["split"] == "test"]
    axes[1].hist(test["purity"], bins=np.linspace(0, 1, 11), color="#55A868")
    axes[1].set_xlabel("fraction of tracks with the bag's majority genre")
    axes[1].set_ylabel("test bags")
    axes[1].set_title("Test-bag label purity")
    fig.tight_layout()
    return fig


def exploration_metrics(
    membership: pd.DataFrame, *, tail_sets: dict[str, list[str]], audit: dict[str, pd.DataFrame]
) -> dict:
    """The counts notebook 01 writes to ``metrics.json``."""
    counts = genre_split_counts(membership)
    summary = audit["summary"]
    return {
        "n_tracks": int(len(membership)),
        "n_genres": int(counts.shape[0]),
        "tracks_per_split": membership["split"].value_counts().to_dict(),
        "training_counts": counts["training"].to_dict() if "training" in counts else {},
        "tail_sets": tail_sets,
        "bags_per_split": summary["n_bags"].to_dict(),
        "mean_bag_size": summary["size_mean"].to_dict(),
        "test_bag_mean_purity": float(summary.loc["test", "mean_purity"]) if "test" in summary.index else None,
        "crossing_albums": int(len(audit["crossing_albums"])),
        "crossing_artists": int(len(audit["crossing_artists"])),
    }
