"""Late fusion: the bag-free control. Track-level genre probabilities averaged over each bag.

Torch-free, so scikit-learn baselines fuse their tracks without importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["late_fusion"]


def late_fusion(
    track_probs: np.ndarray | pd.DataFrame,
    membership: pd.DataFrame,
    *,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Bag-free control: average track-level class probabilities over each bag.

    No bag training is involved; any track-level model (a scikit-learn pipeline's
    ``predict_proba``, a torch instance model's softmax) can be fused this way at test time.

    Parameters
    ----------
    track_probs : ndarray (n_tracks, C) or DataFrame indexed by track_id
        An array must be row-aligned with ``membership``; a DataFrame is looked up by
        ``membership.track_id`` (each track must be present).
    membership : DataFrame
        Bag membership (``mattlib.data.bags``), with ``bag_id`` and ``track_id`` columns.
    classes : sequence of str, optional
        Column names of the result (default: the DataFrame's columns, else 0..C-1).

    Returns
    -------
    DataFrame (n_bags, C), index ``bag_id`` in order of first appearance, rows summing to one
    when the track rows do.
    """
    for col in ("bag_id", "track_id"):
        if col not in membership.columns:
            raise ValueError(f"membership lacks column {col!r}")
    if isinstance(track_probs, pd.DataFrame):
        missing = pd.Index(membership["track_id"]).difference(track_probs.index)
        if len(missing):
            raise ValueError(f"track_probs lacks {len(missing)} tracks, e.g. {list(missing[:5])}")
        if classes is None:
            classes = list(track_probs.columns)
        probs = track_probs.loc[membership["track_id"].to_numpy()].to_numpy(dtype=float)
    else:
        probs = np.asarray(track_probs, dtype=float)
        if probs.ndim != 2 or probs.shape[0] != len(membership):
            raise ValueError(f"track_probs must be (n_tracks={len(membership)}, C), got {probs.shape}")
    if classes is None:
        classes = list(range(probs.shape[1]))
    if len(classes) != probs.shape[1]:
        raise ValueError(f"{len(classes)} classes for {probs.shape[1]} probability columns")
    frame = pd.DataFrame(probs, columns=list(classes))
    frame["bag_id"] = membership["bag_id"].astype(str).to_numpy()
    fused = frame.groupby("bag_id", sort=False).mean()
    return fused
