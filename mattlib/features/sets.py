"""The paper's Table I feature sets: named groups of the 518 statistics."""

from __future__ import annotations

import pandas as pd

from mattlib.features.stats import FMA_FEATURE_SIZES, FMA_STATISTICS

__all__ = ["FEATURE_SETS", "feature_set_dim", "select_feature_set"]


#: Named feature sets of the paper's Table I → FMA feature groups.  ``chroma`` is chroma_cens
#: (84 dims as in Table I; CENS is the smoothed, energy-normalised variant, the most robust to
#: dynamics and timbre).  ``all`` is the full 518 (Table I's "all (1-9)" row has 518 dims, i.e.
#: it also counts chroma_cqt and chroma_stft, which the single sets 1-9 leave out).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "chroma": ("chroma_cens",),
    "tonnetz": ("tonnetz",),
    "mfcc": ("mfcc",),
    "spectral_centroid": ("spectral_centroid",),
    "spectral_bandwidth": ("spectral_bandwidth",),
    "spectral_contrast": ("spectral_contrast",),
    "spectral_rolloff": ("spectral_rolloff",),
    "rms_energy": ("rmse",),
    "zero_crossing": ("zcr",),
    "mfcc+contrast": ("mfcc", "spectral_contrast"),
    "mfcc+contrast+centroid": ("mfcc", "spectral_contrast", "spectral_centroid"),
    "all": tuple(FMA_FEATURE_SIZES),
}
_SET_ALIASES = {"all (1-9)": "all", "all(1-9)": "all", "rms": "rms_energy", "zcr": "zero_crossing"}


def _set_groups(name: str) -> tuple[str, ...]:
    if not isinstance(name, str):
        raise ValueError(f"feature set name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _SET_ALIASES.get(key, key)
    if key not in FEATURE_SETS:
        valid = ", ".join(list(FEATURE_SETS) + ["all (1-9)"])
        raise ValueError(f"unknown feature set {name!r}; valid: {valid}")
    return FEATURE_SETS[key]


def feature_set_dim(name: str) -> int:
    """Number of dimensions of a named feature set (e.g. 84 for ``chroma``, 518 for ``all``)."""
    return sum(FMA_FEATURE_SIZES[g] * len(FMA_STATISTICS) for g in _set_groups(name))


def select_feature_set(features: pd.DataFrame, name: str) -> pd.DataFrame:
    """Columns of a named feature set, in FMA's column order.

    Parameters
    ----------
    features : pandas.DataFrame
        FMA layout: 3-level columns ``(feature, statistics, number)``, e.g. from
        :func:`load_fma518` or ``mattlib.data.fma.load_features``.
    name : str
        A key of :data:`FEATURE_SETS` (or ``"all (1-9)"``).

    Returns
    -------
    pandas.DataFrame
        ``(n_tracks, feature_set_dim(name))``.
    """
    groups = _set_groups(name)
    if not isinstance(features.columns, pd.MultiIndex) or features.columns.nlevels != 3:
        raise ValueError("features must have 3-level (feature, statistics, number) columns")
    level0 = features.columns.get_level_values(0)
    missing = [g for g in groups if g not in set(level0)]
    if missing:
        raise ValueError(f"feature set {name!r} needs groups missing from the table: {', '.join(missing)}")
    out = features.loc[:, level0.isin(groups)]
    expected = feature_set_dim(name)
    if out.shape[1] != expected:
        raise ValueError(f"feature set {name!r}: expected {expected} columns, table has {out.shape[1]}")
    return out
