"""Features (notebook 02): the extraction reports, a log-mel per genre, feature distributions.

Each function returns a table or a figure, so the notebook stays a sequence of calls. The 2-D
projection of a feature table is :func:`mattlib.views.musicnn.embedding_projection` (any table of
vectors per track).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["DISTRIBUTION_COLUMNS", "extraction_table", "failure_reasons", "feature_distributions", "mel_per_genre"]

#: A few of FMA's 518 columns, one per family, whose distributions by genre notebook 02 shows.
DISTRIBUTION_COLUMNS = (
    ("spectral_centroid", "mean", "01"),
    ("zcr", "mean", "01"),
    ("rmse", "mean", "01"),
    ("mfcc", "mean", "02"),
    ("spectral_contrast", "mean", "04"),
    ("chroma_cens", "std", "01"),
)

_REPORT_COLUMNS = ["n_tracks", "done", "reused", "failed", "padded", "seconds", "clips_per_s", "jobs", "device"]


def extraction_table(reports: Mapping[str, object]) -> pd.DataFrame:
    """One row per feature kind: tracks done, reused from the cache, failed, padded, and the speed.

    Parameters
    ----------
    reports : mapping of str to mattlib.features.ExtractionReport
        Kind -> the report :func:`mattlib.features.extract` returned.

    Returns
    -------
    pandas.DataFrame, (n_kinds, 9)
    """
    return pd.DataFrame({kind: report.to_dict() for kind, report in reports.items()}).T[_REPORT_COLUMNS]


def failure_reasons(report) -> pd.DataFrame:
    """An extraction's errors (the first 60 characters of each), most common first, counted.

    Parameters
    ----------
    report : mattlib.features.ExtractionReport

    Returns
    -------
    pandas.DataFrame, (n_reasons, 1)
        Index the error text, column ``count`` (summing to the tracks in ``failures.csv``).
    """
    failures = pd.read_csv(report.paths["failures"])
    return failures["error"].str.slice(0, 60).value_counts().to_frame()


def mel_per_genre(store, genre: pd.Series, *, mel, columns: int = 4) -> plt.Figure:
    """The log-mel spectrogram of the first stored track of each genre, in a grid.

    Parameters
    ----------
    store : mattlib.features.MelStore
        The log-mel cache (:func:`mattlib.features.load_mel`).
    genre : pandas.Series
        Genre per track id.
    mel : mattlib.features.MelSettings
        The store's settings (the axes: ``seconds`` on x, ``n_mels`` bands on y).
    columns : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per genre (dB re 1.0, one shared colour bar).
    """
    in_store = genre.reindex(store.track_ids)
    examples = in_store.groupby(in_store, observed=True).head(1)
    n = len(examples)
    cols = max(1, min(columns, n))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False, layout="constrained")
    image = None
    for ax, (track_id, name) in zip(axes.flat, examples.items()):
        image = ax.imshow(
            store.get(track_id).astype(np.float32),
            origin="lower",
            aspect="auto",
            cmap="magma",
            extent=[0, mel.seconds, 0, mel.n_mels],
        )
        ax.set_title(f"{name} (track {track_id})", fontsize=9)
        ax.set_xlabel("s")
        ax.set_ylabel("mel band")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, label="dB re 1.0", shrink=0.8)
    return fig


def feature_distributions(
    features: pd.DataFrame, genre: pd.Series, *, columns: Sequence[tuple[str, str, str]] = DISTRIBUTION_COLUMNS
) -> plt.Figure:
    """Box plots of a few of FMA's 518 columns, by genre, one panel per column.

    Parameters
    ----------
    features : pandas.DataFrame, (n_tracks, 518)
        FMA's three-level columns (:func:`mattlib.features.load_fma518`), index track_id.
    genre : pandas.Series
        Genre per track id (named ``genre``).
    columns : sequence of (feature, statistic, number)

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns

    columns = list(columns)
    long = (
        features[columns]
        .set_axis([" ".join(c) for c in columns], axis=1)
        .join(genre.rename("genre"))
        .melt(id_vars="genre", var_name="feature")
    )
    grid = sns.catplot(
        data=long, x="value", y="genre", col="feature", col_wrap=3, kind="box", sharex=False, height=2.6, aspect=1.3
    )
    grid.set_titles("{col_name}")
    return grid.figure
