"""Uncertainty in the right units: a two-level bootstrap over training seeds and test albums.

A test metric of a trained model moves for two reasons: which test albums were drawn (tracks of
one album share artist, production and label, so they are not independent) and which training
seed was used. Every interval of the report comes from :func:`replicates`, a hierarchical
bootstrap over both levels:

* each replicate draws the test **albums** with replacement, the same draw for every model, so a
  difference between two models is paired on the same albums;
* for each model it draws that model's **seeds** with replacement (two models' seeds are
  independent training runs, so they are drawn independently);
* the model's metric in the replicate is the mean, over its drawn seeds, of the metric computed
  on the drawn albums (a drawn album's tracks all count, once per draw).

The percentile interval of the replicates covers the metric's expectation over new test albums
*and* new training seeds. With few seeds the seed level is estimated roughly (a bootstrap of 3
values understates their spread by a factor 2/3 in variance); with few albums no bootstrap is
honest, so an interval over fewer than ``min_albums`` albums is reported as not estimable.

A replicate that draws no item of a subset (e.g. no album of a tail genre) leaves that metric
undefined in that replicate; it is left out, never scored as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MIN_ALBUMS",
    "Metric",
    "TestSet",
    "album_counts",
    "holm",
    "interval",
    "metric_values",
    "replicates",
    "seed_counts",
    "weighted_average_precision",
]

#: Fewer test albums than this in a metric's subset: its interval is "not estimable". A percentile
#: bootstrap over a handful of clusters is far too narrow (4 albums give zero-width intervals).
MIN_ALBUMS = 10


@dataclass(frozen=True)
class TestSet:
    """The test items that every compared model scored.

    Parameters
    ----------
    y : (n,) int
        Genre index of each item (a track's own genre, or a bag's majority genre).
    units : (n,) int
        Album code (0 ... U-1) of each item: the resampling unit.
    n_units : int
        Number of albums U (units may hold no item of a subset).
    """

    y: np.ndarray
    units: np.ndarray
    n_units: int

    @classmethod
    def from_labels(cls, y: Sequence[int], albums: Sequence) -> TestSet:
        """A test set from genre indices and album labels of any hashable type.

        Examples
        --------
        >>> t = TestSet.from_labels([0, 1, 1], ["a", "b", "b"])
        >>> t.n_units, t.units.tolist()
        (2, [0, 1, 1])
        """
        codes, uniques = pd.factorize(pd.Series(list(albums)))
        return cls(y=np.asarray(y, dtype=np.int64), units=codes.astype(np.int64), n_units=len(uniques))

    def albums_in(self, mask: np.ndarray | None = None) -> int:
        """Number of albums holding at least one item of ``mask`` (all items: None)."""
        units = self.units if mask is None else self.units[mask]
        return int(len(np.unique(units)))


@dataclass(frozen=True)
class Metric:
    """A metric of per-item scores under per-item weights.

    ``fn(scores (n, C), test, weights (R, n)) -> (R,)``: the metric in each of R weightings
    (a weighting with no mass on the metric's items gives NaN). ``subset(test) -> (n,) bool`` marks the
    items it is computed on (their albums decide whether its interval is estimable).
    """

    name: str
    fn: Callable[[np.ndarray, TestSet, np.ndarray], np.ndarray]
    subset: Callable[[TestSet], np.ndarray]


def album_counts(n_units: int, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_units) int: how often each album is drawn in each replicate.

    Examples
    --------
    >>> album_counts(3, n_boot=2, seed=0).sum(axis=1).tolist()
    [3, 3]
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA1B]))
    draws = rng.integers(0, n_units, (n_boot, n_units))
    counts = np.zeros((n_boot, n_units), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_units), draws.ravel()), 1)
    return counts


def seed_counts(n_seeds: int, *, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_seeds) int: how often each training seed is drawn in each replicate."""
    return album_counts(n_seeds, n_boot=n_boot, seed=seed + 7919)


def metric_values(metric: Metric, scores: np.ndarray, test: TestSet, weights: np.ndarray) -> np.ndarray:
    """(S, R) values of ``metric`` for S seeds' ``scores`` (S, n, C) under weights (R, n)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3 or scores.shape[1] != len(test.y):
        raise ValueError(f"scores must be (n_seeds, n_items={len(test.y)}, C), got {scores.shape}")
    return np.stack([metric.fn(s, test, weights) for s in scores])


def replicates(
    values: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """(R,) hierarchical-bootstrap replicates from per-seed values (S, R).

    Replicate r takes S seeds drawn with replacement (:func:`seed_counts`) and averages their
    values on the r-th album draw. With one seed this is the album bootstrap itself.
    """
    values = np.asarray(values, dtype=np.float64)
    n_seeds = values.shape[0]
    if n_seeds == 1:
        return values[0]
    counts = seed_counts(n_seeds, n_boot=n_boot, seed=seed).astype(np.float64)  # (R, S)
    return np.einsum("rs,sr->r", counts, values) / n_seeds


def interval(draws: np.ndarray, *, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite replicates ((NaN, NaN) when none is finite).

    Examples
    --------
    >>> [round(v, 6) for v in interval(np.arange(101.0))]
    [2.5, 97.5]
    """
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(finite, a)), float(np.quantile(finite, 1 - a))


def p_value(draws: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the difference is 0": twice the smaller tail share
    of replicates at or beyond 0 (with the +1 correction of a Monte-Carlo test)."""
    finite = np.asarray(draws, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan")
    below, above = np.sum(finite <= 0), np.sum(finite >= 0)
    return float(min(1.0, 2 * (min(below, above) + 1) / (finite.size + 1)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted).

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


# --------------------------------------------------------------------------------------------
# metrics under weights


def _ratio(hits: np.ndarray, weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = weights[:, mask]
    mass = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, w @ hits[mask].astype(np.float64) / mass, np.nan)


def top_k_hits(scores: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Per item, whether fewer than ``k`` other genres score at least as high as the true one
    (ties count against the item)."""
    true = scores[np.arange(len(y)), y]
    return (scores >= true[:, None]).sum(axis=1) - 1 < k


def _in(genres: Sequence[int] | None) -> Callable[[TestSet], np.ndarray]:
    if genres is None:
        return lambda test: np.ones(len(test.y), dtype=bool)
    chosen = np.asarray(list(genres), dtype=np.int64)
    return lambda test: np.isin(test.y, chosen)


def top_k(k: int, genres: Sequence[int] | None = None, *, name: str | None = None) -> Metric:
    """Top@K over the items whose genre is in ``genres`` (all items: None); K = 1 is accuracy."""
    subset = _in(genres)

    def fn(scores, test, weights):
        return _ratio(top_k_hits(scores, test.y, k), weights, subset(test))

    return Metric(name or ("accuracy" if k == 1 else f"top{k}"), fn, subset)


def mean_recall(genres: Sequence[int], *, name: str) -> Metric:
    """Mean per-genre recall over ``genres`` (genres without weight in a replicate left out)."""
    chosen = [int(g) for g in genres]
    subset = _in(chosen)

    def fn(scores, test, weights):
        hits = scores.argmax(axis=1) == test.y
        per_genre = np.stack([_ratio(hits, weights, test.y == g) for g in chosen], axis=1)
        return _nanmean_rows(per_genre)

    return Metric(name, fn, subset)


def average_precision(genre: int, *, name: str | None = None) -> Metric:
    """One-vs-rest average precision of one genre: items ranked by that genre's score alone,
    so scores need not sum to one over genres (MATT's per-query scores enter as they are)."""

    def fn(scores, test, weights):
        return weighted_average_precision(scores[:, genre], test.y == genre, weights)

    return Metric(name or f"ap{genre}", fn, lambda test: np.ones(len(test.y), dtype=bool))


def macro_average_precision(n_classes: int, *, name: str = "macro AP") -> Metric:
    """Mean one-vs-rest AP over the genres with test items (in the replicate)."""

    def fn(scores, test, weights):
        per_genre = np.stack(
            [weighted_average_precision(scores[:, g], test.y == g, weights) for g in range(n_classes)], axis=1
        )
        return _nanmean_rows(per_genre)

    return Metric(name, fn, lambda test: np.ones(len(test.y), dtype=bool))


def weighted_average_precision(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted AP ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds, one per weighting row.

    Parameters
    ----------
    score : (n,) float
        One genre's score per item.
    positive : (n,) bool
        Items of that genre.
    weights : (R, n) float
        Item weights (bootstrap draw counts; ones for the plain AP).

    Returns
    -------
    (R,) float: NaN for a row without positive weight. With unit weights it equals
    ``sklearn.metrics.average_precision_score(positive, score)``.

    Examples
    --------
    >>> weighted_average_precision(np.array([0.9, 0.8, 0.1]), np.array([True, False, True]),
    ...                            np.ones((1, 3))).round(4).tolist()
    [0.8333]
    """
    order = np.argsort(-score, kind="mergesort")
    s, pos = score[order], positive[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last item of each tied run
    w = weights[:, order]
    tp = np.cumsum(w * pos, axis=1)[:, last]
    seen = np.cumsum(w, axis=1)[:, last]
    total = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / seen, 0.0)
        recall = np.where(total > 0, tp / total, np.nan)
    gain = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    return np.where(total[:, 0] > 0, np.sum(gain * precision, axis=1), np.nan)


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; an all-NaN row is NaN (without numpy's empty-slice warning)."""
    finite = np.isfinite(values)
    n = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)
