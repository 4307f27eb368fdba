"""A 2-D projection of feature vectors for the notebooks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

__all__ = ["project_2d"]


def project_2d(features: pd.DataFrame, *, method: str = "pca", seed: int = 0, standardize: bool = True) -> pd.DataFrame:
    """2-D projection of feature vectors (for plots).

    Parameters
    ----------
    features : pandas.DataFrame, (n_tracks, d)
        Rows with a NaN are dropped (with a warning).
    method : {"pca", "tsne"}
    seed : int
        Random state (t-SNE).
    standardize : bool
        Z-score each column first (the 518 statistics have very different scales).

    Returns
    -------
    pandas.DataFrame
        Same index, columns ``x``, ``y``.
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    X = features.to_numpy(dtype=np.float64)
    good = np.isfinite(X).all(axis=1)
    if not good.all():
        warnings.warn(f"project_2d: dropped {int((~good).sum())} rows with NaN/inf", stacklevel=2)
    X, index = X[good], features.index[good]
    if len(X) < 3:
        raise ValueError(f"need at least 3 complete rows to project, got {len(X)}")
    if standardize:
        sd = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if method == "pca":
        from sklearn.decomposition import PCA

        Z = PCA(n_components=2, random_state=seed).fit_transform(X)
    else:
        from sklearn.manifold import TSNE

        Z = TSNE(n_components=2, random_state=seed, perplexity=min(30.0, (len(X) - 1) / 3)).fit_transform(X)
    return pd.DataFrame(Z, index=index, columns=["x", "y"])
