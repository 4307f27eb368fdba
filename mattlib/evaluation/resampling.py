"""The album bootstrap of :mod:`mattlib.evaluation.metrics`: every test track's resampling unit
(its album, :func:`resampling_units`), the seeded draws of units per replicate, percentile
intervals, and the paired bootstrap of a difference in accuracy (:func:`paired_difference`).

:mod:`mattlib.evaluation.uncertainty` holds the report's two-level (seed and album) bootstrap;
:mod:`mattlib.evaluation.metrics` re-exports the public names here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["paired_difference", "resampling_units"]


def resampling_units(membership: pd.DataFrame) -> np.ndarray:
    """The bootstrap unit of every row: its album (``a<album>-r<artist>``).

    Tracks of one album are not independent (same artist, production, label), so every model --
    a bag model or a track-level one -- is resampled by album, which keeps their intervals
    comparable. Tracks without an album (id < 0) are their own unit; a membership without album
    columns falls back to ``bag_id``.
    """
    if not {"album_id", "artist_id"} <= set(membership.columns):
        return membership["bag_id"].astype(str).to_numpy()
    album = pd.to_numeric(membership["album_id"], errors="coerce").fillna(-1).astype(np.int64)
    unit = "a" + album.astype(str) + "-r" + membership["artist_id"].astype(str)
    return unit.where(album >= 0, "t" + membership["track_id"].astype(str)).to_numpy()


def _unit_counts(n_units: int, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_units) draws of each unit per replicate (``numpy.random.default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, (n_boot, n_units))
    return np.stack([np.bincount(d, minlength=n_units) for d in draws]) if n_boot else np.zeros((0, n_units))


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


def paired_difference(
    correct_a,
    correct_b,
    units,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Paired bootstrap of a difference in accuracy on the same test tracks.

    Parameters
    ----------
    correct_a, correct_b : (n_tracks,) float
        Per test track, whether model A (B) is right: 0/1, or the fraction of seeds it is right.
    units : (n_tracks,)
        Resampling unit of each track (its album, :func:`resampling_units`); both models see the
        same resampled albums in every replicate.
    n_boot, seed, level
        Replicates, seed and level of the percentile interval.

    Returns
    -------
    dict with ``difference`` (mean of A - B over tracks), ``low``, ``high``, ``n_tracks``,
    ``n_units``.
    """
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correct_a and correct_b must be equal-length 1-D arrays, got {a.shape}, {b.shape}")
    codes, uniq = pd.factorize(pd.Series(np.asarray(units)))
    if len(codes) != len(a):
        raise ValueError(f"units has {len(codes)} entries for {len(a)} tracks")
    if len(a) == 0:
        raise ValueError("no tracks to compare")
    diff = a - b
    weights = _unit_counts(len(uniq), n_boot=n_boot, seed=seed)[:, codes]
    low, high = _percentiles(weights @ diff / np.maximum(weights.sum(1), 1), level)
    return {"difference": float(diff.mean()), "low": low, "high": high, "n_tracks": len(a), "n_units": len(uniq)}
