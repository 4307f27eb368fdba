"""Figures of musicnn embeddings for the notebooks: a clip's taggram, the tracks' 2-D projection."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

__all__ = ["taggram_heatmap", "embedding_projection"]


def taggram_heatmap(
    taggram: np.ndarray, tags: Sequence[str], *, title: str = "", patch_seconds: float = 3.0
) -> go.Figure:
    """A clip's taggram: tag probability per 3 s patch (patches × tags heatmap).

    Parameters
    ----------
    taggram : np.ndarray, shape (n_patches, n_tags)
        From :func:`mattlib.features.musicnn.embed_file`.
    tags : sequence of str, length n_tags
    title : str
    patch_seconds : float
        Seconds per patch (musicnn: 187 frames of 16 ms).

    Returns
    -------
    plotly.graph_objects.Figure
        Tags on the y axis, ordered by their mean probability over the clip (highest on top).

    Examples
    --------
    >>> fig = taggram_heatmap(np.random.default_rng(0).random((10, 3)), ["rock", "pop", "jazz"])
    """
    taggram = np.asarray(taggram, dtype=np.float32)
    if taggram.ndim != 2 or taggram.shape[1] != len(tags):
        raise ValueError(f"taggram must be (n_patches, {len(tags)}), got {taggram.shape}")
    order = np.argsort(taggram.mean(axis=0))  # ascending: the highest mean at the top of the plot
    starts = [f"{i * patch_seconds:g}-{(i + 1) * patch_seconds:g} s" for i in range(taggram.shape[0])]
    fig = go.Figure(
        go.Heatmap(
            z=taggram[:, order].T,
            x=starts,
            y=[tags[i] for i in order],
            zmin=0.0,
            zmax=1.0,
            colorscale="Viridis",
            colorbar={"title": "p(tag)"},
        )
    )
    fig.update_layout(
        title=title, xaxis_title="patch", yaxis_title="tag", height=max(400, 14 * len(tags)), yaxis={"dtick": 1}
    )
    return fig


def embedding_projection(
    embeddings: pd.DataFrame, genre: pd.Series, *, seed: int = 0, title: str = "", method: str = "pca"
) -> go.Figure:
    """The tracks' embeddings projected to 2-D (:func:`mattlib.features.project_2d`), coloured by genre.

    Parameters
    ----------
    embeddings : pandas.DataFrame, (n_tracks, dim), index track_id
        E.g. :func:`mattlib.features.musicnn.load_musicnn_features`.
    genre : pandas.Series
        Genre per track id (tracks without one are shown as "(none)").
    seed : int
    method : {"pca", "tsne"}

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from mattlib.features import project_2d

    xy = project_2d(embeddings, method=method, seed=seed)
    xy["genre"] = genre.reindex(xy.index).astype("string").fillna("(none)").to_numpy()
    return px.scatter(xy.reset_index(), x="x", y="y", color="genre", hover_data=[xy.index.name or "index"], title=title)
