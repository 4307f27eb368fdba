"""Evaluation: accuracy (track and bag level), macro-F1, balanced accuracy, per-genre recall,
micro precision-recall / average precision, Top@K on tail genres, head/medium/tail recall,
album bootstrap confidence intervals (the case study's bags of one are
:func:`mattlib.data.bags.singletons`). The tail sets and frequency groups live in
:mod:`mattlib.evaluation.tails`, the album bootstrap's pieces in :mod:`mattlib.evaluation.resampling`.

Conventions
-----------
* ``classes`` is the ordered genre list; ``y`` arrays hold indices into it; ``scores`` are
  ``(n_items, C)`` class scores (probabilities for bag models).
* *Track level*: a bag's scores are broadcast to each of its tracks and compared with the
  track's **own** genre (``membership.genre``); *bag level*: compared with ``bag_genre``.
  Track-level numbers are the paper's unit of evaluation; for bags of one both coincide.
* Metrics undefined on the data (e.g. Top@K over an empty tail set) are ``None`` (JSON null).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mattlib.evaluation.resampling import _percentiles, _unit_counts, resampling_units
from mattlib.evaluation.tails import PAPER_TAIL_SETS, frequency_groups, tail_sets

__all__ = [
    "average_precision_micro",
    "broadcast_to_tracks",
    "evaluate",
    "macro_f1",
    "micro_pr_curve",
    "per_class_recall",
    "top_k_accuracy",
]


# --------------------------------------------------------------------------------------------
# elementary metrics


def _check_scores(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n_items, C), got shape {s.shape}")
    if y.shape != (s.shape[0],):
        raise ValueError(f"y_true must be ({s.shape[0]},), got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"y_true must hold class indices in [0, {s.shape[1]})")
    return y.astype(np.int64), s


def top_k_accuracy(y_true, scores, *, k: int, restrict_to: Sequence[int] | None = None) -> float | None:
    """Micro Top@K: fraction of items whose true class is among the ``k`` highest scores.

    Parameters
    ----------
    y_true : (n,) int
    scores : (n, C) float
    k : int >= 1
    restrict_to : class indices, optional
        Only items whose true class is in this set count (Top@K on tail genres).

    Returns
    -------
    float, or None when no item qualifies. Ties count **against** the item: the true class's
    rank is the number of other classes scoring at least as high, so a model whose scores are
    flat (e.g. kNN's 1/k probability steps) gains nothing from a tie.
    """
    y, s = _check_scores(y_true, scores)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if restrict_to is None:
        keep = np.ones(len(y), bool)
    else:
        keep = np.isin(y, np.asarray(list(restrict_to), dtype=np.int64))
    if not keep.any():
        return None
    y, s = y[keep], s[keep]
    return float(_top_k_hits(y, s, k).mean())


def _top_k_hits(y: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """Per item, True when fewer than ``k`` other classes score at least as high as the true one."""
    true_score = s[np.arange(len(y)), y]
    rank = (s >= true_score[:, None]).sum(axis=1) - 1  # ties against the true class
    return rank < k


def micro_pr_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Micro-averaged precision-recall curve over all (item x class) pairs.

    Every pair is one binary decision (positive iff the class is the item's true class), ranked
    by score. Returns ``precision``, ``recall`` (decreasing recall, ending at (1, 0) as
    scikit-learn does) and the ``thresholds`` (increasing) -- the same arrays as
    ``sklearn.metrics.precision_recall_curve`` on the flattened one-hot labels.
    """
    y, s = _check_scores(y_true, scores)
    onehot = np.zeros_like(s, dtype=bool)
    onehot[np.arange(len(y)), y] = True
    flat_y, flat_s = onehot.ravel(), s.ravel()
    order = np.argsort(-flat_s, kind="mergesort")
    flat_y, flat_s = flat_y[order], flat_s[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(flat_s)), flat_y.size - 1]  # distinct thresholds
    tp = np.cumsum(flat_y)[last_of_run].astype(float)
    fp = (last_of_run + 1) - tp
    n_pos = max(flat_y.sum(), 1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    recall = tp / n_pos
    thresholds = flat_s[last_of_run]
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return precision, recall, thresholds[::-1]


def average_precision_micro(y_true, scores, *, sample_weight=None) -> float:
    """Micro average precision: ``sum_n (R_n - R_{n-1}) P_n`` over the micro PR curve.

    Equals ``sklearn.metrics.average_precision_score(onehot(y), scores, average='micro')``;
    ``sample_weight`` (n_items,) weighs every (item x class) pair of an item alike.
    """
    y, s = _check_scores(y_true, scores)
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return _micro_ap(y, s)(weights)


def _micro_ap(y: np.ndarray, s: np.ndarray):
    """``weights (n_items,) -> micro AP``; the pairs are sorted once (fast bootstrap)."""
    onehot = np.zeros_like(s, dtype=bool)
    onehot[np.arange(len(y)), y] = True
    order = np.argsort(-s.ravel(), kind="mergesort")
    positive = onehot.ravel()[order].astype(np.float64)
    item = np.repeat(np.arange(len(y)), s.shape[1])[order]
    flat_s = s.ravel()[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(flat_s)), flat_s.size - 1]  # distinct thresholds

    def ap(weights: np.ndarray) -> float:
        w = weights[item]
        tp = np.cumsum(positive * w)[last_of_run]
        seen = np.cumsum(w)[last_of_run]
        if tp[-1] <= 0:
            return float("nan")
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        recall = tp / tp[-1]
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    return ap


def _ap_one_vs_rest(score: np.ndarray, positive: np.ndarray) -> float:
    """One-vs-rest AP of one genre (tracks ranked by that genre's score); NaN without positives."""
    from mattlib.evaluation.uncertainty import weighted_average_precision

    return float(weighted_average_precision(score, positive, np.ones((1, len(score))))[0])


def _confusion(y_true, y_pred, n_classes: int, weights=None) -> np.ndarray:
    idx = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    return np.bincount(idx, weights=weights, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_recall(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Recall per class, (C,) float with NaN for classes absent from ``y_true``."""
    cm = _confusion(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def _macro_f1_from_cm(cm: np.ndarray) -> float:
    tp = np.diag(cm)
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    present = denom > 0  # classes occurring in y_true or y_pred (scikit-learn's default set)
    if not present.any():
        return float("nan")
    return float(np.mean(2 * tp[present] / denom[present]))


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Macro-F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's default)."""
    return _macro_f1_from_cm(_confusion(y_true, y_pred, n_classes))


def _balanced_from_cm(cm: np.ndarray) -> float:
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else float("nan")


# --------------------------------------------------------------------------------------------
# bags -> tracks


def broadcast_to_tracks(
    bag_ids: Sequence[str], scores, membership: pd.DataFrame, classes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Broadcast bag scores to the bags' tracks.

    Parameters
    ----------
    bag_ids : (n_bags,) str
    scores : (n_bags, C)
    membership : DataFrame with ``bag_id``, ``track_id``, ``genre``, ``bag_genre``
        Only rows of the given bags are used; every bag must have rows.
    classes : sequence of str

    Returns
    -------
    dict with ``track_id`` (n_tracks,), ``bag_index`` (n_tracks,) row of each track's bag,
    ``y_track`` (n_tracks,) track genre index, ``y_bag`` (n_bags,) bag genre index,
    ``scores`` (n_tracks, C), ``unit`` (n_tracks,) the track's album (:func:`resampling_units`).
    """
    for col in ("bag_id", "track_id", "genre", "bag_genre"):
        if col not in membership.columns:
            raise ValueError(f"membership lacks column {col!r}")
    bag_ids = [str(b) for b in bag_ids]
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(bag_ids), len(classes)):
        raise ValueError(f"scores must be (n_bags={len(bag_ids)}, C={len(classes)}), got {s.shape}")
    if len(set(bag_ids)) != len(bag_ids):
        raise ValueError("bag_ids contain duplicates")
    pos = pd.Series(np.arange(len(bag_ids)), index=pd.Index(bag_ids))
    rows = membership[membership["bag_id"].astype(str).isin(pos.index)]
    missing = pos.index.difference(rows["bag_id"].astype(str).unique())
    if len(missing):
        raise ValueError(f"{len(missing)} bags have no membership rows, e.g. {list(missing[:5])}")
    cidx = {str(c): i for i, c in enumerate(classes)}
    unknown = set(rows["genre"].astype(str)) - set(cidx)
    if unknown:
        raise ValueError(f"track genres not in classes: {sorted(unknown)}")
    bag_index = pos.loc[rows["bag_id"].astype(str)].to_numpy()
    y_track = rows["genre"].astype(str).map(cidx).to_numpy(dtype=np.int64)
    bag_genre = rows.groupby(rows["bag_id"].astype(str), sort=False)["bag_genre"].first().astype(str)
    unknown = set(bag_genre) - set(cidx)
    if unknown:
        raise ValueError(f"bag genres not in classes: {sorted(unknown)}")
    y_bag = bag_genre.loc[bag_ids].map(cidx).to_numpy(dtype=np.int64)
    return {
        "track_id": rows["track_id"].to_numpy(),
        "bag_index": bag_index,
        "y_track": y_track,
        "y_bag": y_bag,
        "scores": s[bag_index],
        "unit": resampling_units(rows),
    }


def _none_if_nan(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def evaluate(
    *,
    bag_ids: Sequence[str],
    scores,
    membership: pd.DataFrame,
    classes: Sequence[str],
    train_counts: Mapping[str, int],
    ks: Sequence[int] = (2, 3, 5),
    tail_thresholds: Sequence[float] | Mapping[str, float] = (100, 200),
    head_min: int = 1000,
    tail_max: int = 200,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    include_pr_curve: bool = False,
    split: str | None = None,
) -> dict:
    """All metrics of one model on one split, as a JSON-serialisable dict.

    Parameters
    ----------
    bag_ids : (n_bags,) str
        The evaluated bags (e.g. ``Predictions.bag_ids``).
    scores : (n_bags, C) float
        Bag scores (e.g. ``Predictions.scores`` or :func:`mattlib.models.fusion.late_fusion`).
    membership : DataFrame
        Membership covering these bags (other rows are ignored).
    classes : sequence of str
    train_counts : Mapping genre -> number of training tracks
        Defines the tail sets and the head / medium / tail groups.
    ks : Top@K values, default (2, 3, 5)
    tail_thresholds : sequence or Mapping name -> threshold, default (100, 200)
        See :func:`tail_sets` (a mapping keeps names such as ``'<100'`` for scaled thresholds).
    head_min, tail_max : int
        Group thresholds (head >= head_min, tail < tail_max training tracks).
    n_boot, seed, level
        Bootstrap over **albums** (:func:`resampling_units`; tracks of one album move together,
        for bag models and track-level models alike); ``n_boot=0`` skips it. The same seed
        draws the same albums for every model.
    include_pr_curve : bool
        Add the micro PR curve (at most 201 points).
    split : str, optional
        Use only membership rows of this split (when bag ids repeat across splits).

    Returns
    -------
    dict with keys

    ``n_bags``, ``n_tracks`` : int
    ``track_accuracy`` : bag prediction broadcast to tracks vs. each track's genre
    ``bag_accuracy`` : bag prediction vs. ``bag_genre``
    ``macro_f1``, ``balanced_accuracy`` : track level
    ``bag_macro_f1`` : bag level
    ``average_precision`` : micro AP over (track x genre) scores
    ``per_genre_recall`` : {genre: recall or None}, track level
    ``top_k`` : {tail set: {str(K): Top@K or None}} for ``'<100'``, ``'<200'`` (from
        ``train_counts`` and ``tail_thresholds``) and ``'paper<100'``, ``'paper<200'`` (:data:`PAPER_TAIL_SETS`)
    ``tail_sets`` : {tail set: [genres]} (genres outside ``classes`` dropped)
    ``tail_support`` : {tail set: number of test tracks in it}
    ``tail_album_support`` : {tail set: number of test albums holding such tracks}
    ``group_recall`` : {'head'|'medium'|'tail': mean per-genre recall or None}
    ``groups`` : {'head'|'medium'|'tail': [genres]}
    ``ci`` : {metric: [low, high]} for track_accuracy, bag_accuracy, macro_f1,
        balanced_accuracy, average_precision and ``top_k|<tail set>|<K>`` (album bootstrap
        percentile interval at ``level``), plus ``ci_level``, ``ci_replicates``, ``n_albums``
    ``pr_curve`` : {'precision': [...], 'recall': [...]} when requested
    """
    classes = [str(c) for c in classes]
    C = len(classes)
    if split is not None:
        if "split" not in membership.columns:
            raise ValueError("split given but membership has no 'split' column")
        membership = membership[membership["split"] == split]
    t = broadcast_to_tracks(bag_ids, scores, membership, classes)
    s_bag = np.asarray(scores, dtype=np.float64)
    pred_bag = s_bag.argmax(1)
    pred_track = pred_bag[t["bag_index"]]
    y_track, y_bag = t["y_track"], t["y_bag"]
    recall = per_class_recall(y_track, pred_track, C)
    cidx = {c: i for i, c in enumerate(classes)}

    out: dict = {
        "n_bags": int(len(pred_bag)),
        "n_tracks": int(len(y_track)),
        "track_accuracy": float(np.mean(pred_track == y_track)),
        "bag_accuracy": float(np.mean(pred_bag == y_bag)),
        "macro_f1": _none_if_nan(macro_f1(y_track, pred_track, C)),
        "bag_macro_f1": _none_if_nan(macro_f1(y_bag, pred_bag, C)),
        "balanced_accuracy": _none_if_nan(_balanced_from_cm(_confusion(y_track, pred_track, C))),
        "average_precision": float(average_precision_micro(y_track, t["scores"])),
        "per_genre_recall": {c: _none_if_nan(float(recall[i])) for i, c in enumerate(classes)},
    }

    sets = {k: v for k, v in tail_sets(train_counts, thresholds=tail_thresholds).items()}
    sets.update({f"paper{k}": v for k, v in PAPER_TAIL_SETS.items()})
    sets = {k: [g for g in v if g in cidx] for k, v in sets.items()}
    out["tail_sets"] = sets
    out["top_k"] = {
        name: {str(k): top_k_accuracy(y_track, t["scores"], k=k, restrict_to=[cidx[g] for g in genres]) for k in ks}
        for name, genres in sets.items()
    }
    out["bag_top_k"] = {
        name: {str(k): top_k_accuracy(y_bag, s_bag, k=k, restrict_to=[cidx[g] for g in genres]) for k in ks}
        for name, genres in sets.items()
    }
    out["per_genre_ap"] = {
        c: _none_if_nan(float(_ap_one_vs_rest(t["scores"][:, i], y_track == i))) for i, c in enumerate(classes)
    }
    present = [v for v in out["per_genre_ap"].values() if v is not None]
    out["macro_ap"] = float(np.mean(present)) if present else None
    in_set = {name: np.isin(y_track, [cidx[g] for g in genres]) for name, genres in sets.items()}
    out["tail_support"] = {name: int(mask.sum()) for name, mask in in_set.items()}
    unit_codes, unit_names = pd.factorize(pd.Series(t["unit"]))
    out["tail_album_support"] = {name: len(np.unique(unit_codes[mask])) for name, mask in in_set.items()}

    groups = frequency_groups(train_counts, head_min=head_min, tail_max=tail_max)
    groups = {k: [g for g in v if g in cidx] for k, v in groups.items()}
    out["groups"] = groups
    out["group_recall"] = {}
    for name, genres in groups.items():
        vals = [recall[cidx[g]] for g in genres if np.isfinite(recall[cidx[g]])]
        out["group_recall"][name] = float(np.mean(vals)) if vals else None

    if n_boot > 0:
        counts = _unit_counts(len(unit_names), n_boot=n_boot, seed=seed)
        w_track = counts[:, unit_codes]  # (n_boot, n_tracks): tracks of a drawn album move together
        bag_unit = pd.Series(unit_codes).groupby(t["bag_index"]).first().reindex(range(len(pred_bag)))
        w_bag = counts[:, bag_unit.to_numpy()]

        def mean_of(hits: np.ndarray, w: np.ndarray) -> np.ndarray:
            # a replicate that draws none of these items leaves the metric undefined (NaN, left
            # out of the interval), never 0
            mass = w.sum(1)
            return np.where(mass > 0, w @ hits.astype(float) / np.maximum(mass, 1), np.nan)

        def per_replicate(fn) -> np.ndarray:
            return np.array([fn(w) for w in w_track])

        ap = _micro_ap(y_track, t["scores"])
        stats = {
            "track_accuracy": mean_of(pred_track == y_track, w_track),
            "bag_accuracy": mean_of(pred_bag == y_bag, w_bag),
            "macro_f1": per_replicate(lambda w: _macro_f1_from_cm(_confusion(y_track, pred_track, C, w))),
            "balanced_accuracy": per_replicate(lambda w: _balanced_from_cm(_confusion(y_track, pred_track, C, w))),
            "average_precision": per_replicate(ap),
        }
        for name, mask in in_set.items():
            if not mask.any():
                continue
            for k in ks:
                hits = _top_k_hits(y_track[mask], t["scores"][mask], k)
                stats[f"top_k|{name}|{k}"] = mean_of(hits, w_track[:, mask])
        out["ci"] = {name: [_none_if_nan(v) for v in _percentiles(values, level)] for name, values in stats.items()}
        out["ci_level"] = float(level)
        out["ci_replicates"] = int(n_boot)
        out["n_albums"] = len(unit_names)

    if include_pr_curve:
        precision, rec, _ = micro_pr_curve(y_track, t["scores"])
        keep = np.unique(np.linspace(0, len(precision) - 1, min(len(precision), 201)).astype(int))
        out["pr_curve"] = {"precision": precision[keep].tolist(), "recall": rec[keep].tolist()}
    return out
