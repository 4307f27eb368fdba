"""The study's data for one feature set, loaded once: :func:`load` -> :class:`StudyData`.

:func:`load` builds the album–artist bags (:mod:`mattlib.data.bags`) of the tracks whose features
exist (failed extractions are left out with a warning, and too many stop the run), the genre
classes and the training counts, and refuses a split that leaks an album or an artist.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mattlib import paths
from mattlib.data import bags as bagging
from mattlib.data import datasets, fma
from mattlib.evaluation.tails import tail_thresholds

if TYPE_CHECKING:
    from mattlib.study.settings import Settings

__all__ = ["MAX_MISSING_SHARE", "StudyData", "load", "row_map"]

#: The largest share of labelled tracks that may lack features (failed clips are listed and left
#: out); above it a run stops, since its numbers would describe another dataset.
MAX_MISSING_SHARE = 0.05


@dataclass
class StudyData:
    """Everything an experiment needs, loaded once.

    Attributes
    ----------
    membership : DataFrame
        Album–artist bags (``mattlib.data.bags`` columns) of the tracks that have features.
    classes : list of str
        Genre names in FMA's order (top-level genres present in the training split).
    train_counts : Series
        Training tracks per genre.
    instances : DataFrame or numpy array
        Feature matrix (index track_id) or log-mel array (n_tracks, n_mels, frames).
    track_index : dict or None
        ``track_id -> row`` of a log-mel array (``None`` for a DataFrame).
    feature_set : str
    data_root : Path
    subset : str
    """

    membership: pd.DataFrame
    classes: list[str]
    train_counts: pd.Series
    instances: Any
    track_index: dict[int, int] | None
    feature_set: str
    data_root: Path
    subset: str
    missing_features: int = 0
    max_bag_size: int = 0  # training bags above it are chunked; whole bags are encoded in chunks of it

    @property
    def tail_thresholds(self) -> tuple[float, ...]:
        """(``<100``, ``<200``, head) thresholds, see :func:`tail_thresholds`."""
        return tail_thresholds(self.train_counts)

    @property
    def instance_shape(self) -> tuple[int, ...]:
        return tuple(self.instances.shape[1:])

    def split(self, name: str, *, single: bool = False) -> pd.DataFrame:
        """Membership rows of one split (as bags of one track when ``single``)."""
        rows = self.membership[self.membership["split"] == name]
        return bagging.singletons(rows) if single else rows

    def matrix(self, track_ids) -> np.ndarray:
        """Feature rows (float32) of ``track_ids`` (feature sets only)."""
        if not isinstance(self.instances, pd.DataFrame):
            raise TypeError("matrix() needs a feature set, not the log-mel")
        return self.instances.loc[np.asarray(track_ids)].to_numpy(dtype=np.float32)

    def describe(self) -> str:
        table = bagging.bag_table(self.membership)
        per_split = table.groupby("split")["size"].agg(["count", "sum"])
        parts = [f"{s}: {int(r['sum'])} tracks / {int(r['count'])} bags" for s, r in per_split.iterrows()]
        return f"feature set {self.feature_set!r} {self.instance_shape}, {len(self.classes)} genres; " + "; ".join(
            parts
        )


def load(settings: Settings, *, features_source: str = "auto") -> StudyData:
    """Load tracks, bags and instances of ``settings.feature_set``.

    Parameters
    ----------
    settings : Settings
        Read: ``data_root``, ``dataset`` (:data:`mattlib.data.datasets.DATASETS`), ``subset``,
        ``cache_dir`` (``matt features --out``), ``feature_set``, ``max_bag_size``, ``mel``
        (which cached log-mel), ``musicnn`` and ``allow_leakage``. ``max_bag_size`` N > 0 cuts
        **training** bags above N tracks into chunks (no track is dropped); validation and test
        bags stay whole and torch models encode them N tracks at a time, pooling all of them.
    features_source : {"auto", "cache", "fma"}
        Where the 518 statistics come from: "auto" uses the dataset's own ``features.csv``
        (FMA's) when the root has one, else the project's cache.

    Returns
    -------
    StudyData

    Raises
    ------
    mattlib.data.bags.LeakageError
        An album or artist spans splits and ``allow_leakage`` is False (with it: a warning, and
        ``metrics.json`` records the leak).
    """
    data_root, cache_dir = paths.resolve(settings.data_root), paths.resolve(settings.cache_dir)
    source = datasets.open_dataset(data_root, dataset=settings.dataset)
    tracks = source.tracks(subset=settings.subset)
    instances, track_index = _instances(settings, dataset=source, cache_dir=cache_dir, features_source=features_source)
    if isinstance(instances, pd.DataFrame):
        instances = _finite(instances)
    available = instances.index if isinstance(instances, pd.DataFrame) else list(track_index)
    has_features = tracks.index.isin(available)
    missing = _check_missing(tracks, has_features, settings=settings, data_root=data_root, cache_dir=cache_dir)
    membership = bagging.make_bags(tracks[has_features], max_size=settings.max_bag_size or None)
    if settings.allow_leakage:
        if found := bagging.leakage(membership):
            warnings.warn(f"allow_leakage: the split leaks: {found}", stacklevel=2)
    else:
        bagging.assert_no_leakage(membership, where=str(data_root))
    counts = bagging.train_counts(membership)
    classes = [g for g in source.genres() if counts.get(g, 0) > 0]
    outside = sorted(set(membership["genre"]) - set(classes))
    if outside:
        warnings.warn(f"genres without training tracks are left out: {outside}", stacklevel=2)
        membership = membership[membership["genre"].isin(classes) & membership["bag_genre"].isin(classes)]
    return StudyData(
        membership=membership.reset_index(drop=True),
        classes=classes,
        train_counts=bagging.train_counts(membership, classes=classes),
        instances=instances,
        track_index=track_index,
        feature_set=settings.feature_set,
        data_root=data_root,
        subset=settings.subset,
        missing_features=missing,
        max_bag_size=settings.max_bag_size,
    )


def row_map(store) -> dict[int, int]:
    """track_id -> row of a MelStore's array (failed rows are not in its index)."""
    return {int(t): int(r) for t, r in zip(store.index.index, store.index["row"])}


def _instances(settings: Settings, *, dataset: datasets.Dataset, cache_dir: Path, features_source: str):
    """(instances, track_index) of the feature set: a DataFrame and None, or a log-mel array and
    its track_id -> row map."""
    from mattlib import features

    if settings.feature_set == "musicnn":  # one vector per track: the mean over its patches
        from mattlib.features import musicnn as musicnn_features

        return musicnn_features.load_musicnn_features(cache_dir, settings.musicnn), None
    if settings.feature_set == "mel":
        store = features.load_mel(features.mel_dir(cache_dir, settings.mel))
        return store.mel, row_map(store)
    official = dataset.official_features_path()
    if features_source == "fma" or (features_source == "auto" and official is not None):
        table = fma.load_features_cached(official, cache_dir=cache_dir)
    elif features_source in ("auto", "cache"):
        table = features.load_fma518(cache_dir)
    else:
        raise ValueError(f"features_source={features_source!r}; valid: auto, cache, fma")
    return features.select_feature_set(table, settings.feature_set), None


def _finite(instances: pd.DataFrame) -> pd.DataFrame:
    """``instances`` with undefined values (NaN / inf) set to 0, and a warning saying how many."""
    bad = ~np.isfinite(instances.to_numpy(dtype=float))
    if not bad.any():
        return instances
    # skew / kurtosis of a constant series (e.g. a silent chroma bin) are undefined
    warnings.warn(
        f"{int(bad.any(axis=1).sum())} track(s) have {int(bad.sum())} undefined "
        "feature value(s) (NaN/inf, e.g. skew of a constant); set to 0",
        stacklevel=3,
    )
    return instances.mask(bad, 0.0)


def _check_missing(tracks: pd.DataFrame, has_features, *, settings: Settings, data_root: Path, cache_dir: Path) -> int:
    """Labelled tracks without features: a warning, or an error above :data:`MAX_MISSING_SHARE`."""
    labelled = int(tracks["genre"].notna().sum())
    missing = int((~has_features & tracks["genre"].notna().to_numpy()).sum())
    if labelled and missing > MAX_MISSING_SHARE * labelled:
        raise ValueError(
            f"{missing} of {labelled} labelled tracks ({missing / labelled:.0%}, more than {MAX_MISSING_SHARE:.0%}) "
            f"have no {settings.feature_set} features in {cache_dir}: the cache is incomplete or for other settings; "
            f"run matt features --root {data_root} --out {cache_dir} (see its failures.csv)"
        )
    if missing:
        warnings.warn(
            f"{missing} labelled track(s) have no {settings.feature_set} features (failed or not extracted) and are "
            "left out",
            stacklevel=3,
        )
    return missing
