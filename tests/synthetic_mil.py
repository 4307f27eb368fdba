"""A synthetic multiple-instance task for the tests' sanity checks (test_mil, test_train); needs no torch."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["synthetic_mil_task"]


def synthetic_mil_task(
    *,
    n_bags: int,
    n_classes: int = 4,
    dim: int = 16,
    min_size: int = 2,
    max_size: int = 6,
    signal: float = 4.0,
    split: str = "training",
    seed: int = 0,
    first_track_id: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A synthetic multiple-instance task for sanity checks.

    Each bag has ``min_size..max_size`` instances; exactly one (the *key* instance, at a random
    position) carries the bag's genre: ``x = signal * p_g + 0.5 * noise`` with ``p_g`` a fixed
    random unit vector per genre (the same for every seed); the others are pure ``N(0, I)``
    noise. A good attention puts its largest weight on the key instance.

    Returns
    -------
    membership : DataFrame
        In ``mattlib.data.bags``' format (``bag_id``, ``track_id``, ``split``, ``genre``,
        ``bag_genre``, ``album_id``, ``artist_id``, ``bag_size``); genres are ``'g0'...``.
    features : DataFrame (n_tracks, dim) float32, indexed by ``track_id``.
    key : ndarray (n_tracks,) bool
        True for key instances (row-aligned with ``membership``).
    """
    if n_bags < 1 or n_classes < 2 or dim < 1 or not 1 <= min_size <= max_size:
        raise ValueError("need n_bags >= 1, n_classes >= 2, dim >= 1, 1 <= min_size <= max_size")
    protos = np.random.default_rng(12345).normal(size=(n_classes, dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    rows, feats, key = [], [], []
    tid = first_track_id
    for b in range(n_bags):
        g = int(rng.integers(n_classes))
        n = int(rng.integers(min_size, max_size + 1))
        k = int(rng.integers(n))
        for i in range(n):
            x = rng.normal(size=dim)
            if i == k:
                x = 0.5 * x + signal * protos[g]
            feats.append(x)
            key.append(i == k)
            rows.append(
                {
                    "bag_id": f"{split}-{seed}-{b}",
                    "track_id": tid,
                    "split": split,
                    "genre": f"g{g}",
                    "bag_genre": f"g{g}",
                    "album_id": b,
                    "artist_id": b,
                    "bag_size": n,
                }
            )
            tid += 1
    membership = pd.DataFrame(rows)
    features = pd.DataFrame(
        np.asarray(feats, dtype=np.float32), index=pd.Index(membership["track_id"], name="track_id")
    )
    return membership, features, np.asarray(key)
