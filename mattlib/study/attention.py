"""Per-bag attention for the explorer (:mod:`mattlib.views.widgets`): the records of
``attention.json``, the raw scores behind softmax weights, and each track's log-mel."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mattlib import paths
from mattlib.study.data import row_map

if TYPE_CHECKING:
    from mattlib.features import MelSettings
    from mattlib.study.data import StudyData

__all__ = ["MelLookup", "attention_records", "mel_lookup", "raw_scores"]


def raw_scores(weights: np.ndarray) -> np.ndarray:
    """The raw scores ``e_k`` behind softmax weights, per row, centred to mean 0 over the bag.

    ``softmax`` ignores a constant added to every score of a bag, so ``log w_k`` minus its bag
    mean is ``e_k`` minus its bag mean exactly; a pooling whose weights are no softmax (max's
    win shares) gets the same transform of its weights.

    Examples
    --------
    >>> w = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    >>> raw_scores(w).round(6).tolist()
    [-1.0, 0.0, 1.0]
    """
    logw = np.log(np.clip(np.asarray(weights, dtype=float), 1e-12, None))
    return logw - logw.mean(axis=-1, keepdims=True)


def attention_records(preds, membership: pd.DataFrame, classes: list[str]) -> list[dict]:
    """Per-bag attention for :mod:`mattlib.views.widgets` (``attention.json``'s ``bags``): the
    weights per query (``attention``) and the raw scores behind them (``raw``, see
    :func:`raw_scores`)."""
    rows = membership.groupby("bag_id", sort=False)
    records = []
    for i, bag_id in enumerate(preds.bag_ids):
        group = rows.get_group(bag_id)
        if preds.attention_all is not None:
            queries, weights = list(classes), preds.attention_all[i]
        else:
            queries, weights = ["bag"], preds.attention[i][None, :]
        weights = np.asarray(weights, dtype=float)
        records.append(
            {
                "bag_id": bag_id,
                "split": str(group["split"].iloc[0]),
                "true_genre": str(group["bag_genre"].iloc[0]),
                "pred_genre": classes[int(np.argmax(preds.scores[i]))],
                "scores": np.round(preds.scores[i], 5).tolist(),
                "tracks": group["track_id"].astype(int).tolist(),
                "track_genres": group["genre"].astype(str).tolist(),
                "queries": queries,
                "attention": np.round(weights, 5).tolist(),
                "raw": np.round(raw_scores(weights), 5).tolist(),
            }
        )
    return records


@dataclass(frozen=True)
class MelLookup:
    """``track_id -> log-mel (n_mels, frames)`` for the attention explorer, and a ``note`` saying
    which cached log-mel it reads when that is not the one asked for (empty otherwise).  False
    when no log-mel is cached (calling it then raises KeyError)."""

    rows: dict[int, int]
    array: Any = None
    note: str = ""

    def __call__(self, track_id: int) -> np.ndarray:
        return np.asarray(self.array[self.rows[int(track_id)]], dtype=np.float32)

    def __bool__(self) -> bool:
        return bool(self.rows)


def mel_lookup(data: StudyData, *, cache_dir: str | Path, mel: MelSettings) -> MelLookup:
    """The log-mel of each track for the attention explorer: the study data's own instances for
    the mel feature set, else the cached log-mel of ``mel``, else the nearest cached one, saying
    so in ``note``."""
    from mattlib import features

    if data.feature_set == "mel":
        return MelLookup(rows=dict(data.track_index), array=data.instances)
    wanted = mel
    cache = paths.resolve(cache_dir)
    folder = features.nearest_mel(cache, wanted)
    if folder is None:
        return MelLookup(rows={}, note=f"no log-mel cached under {cache}; run: matt features --kind mel --out {cache}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = features.load_mel(folder)
    note = ""
    if folder != features.mel_dir(cache, wanted):
        note = (
            f"no log-mel cached for these settings ({wanted.seconds:g} s at {wanted.sr} Hz, {wanted.n_mels} bands); "
            f"showing the nearest cached one: {folder.name} ({store.settings.seconds:g} s at {store.settings.sr} Hz, "
            f"{store.settings.n_mels} bands). Cached: {', '.join(f.name for f in features.cached_mels(cache))}"
        )
    return MelLookup(rows=row_map(store), array=store.mel, note=note)
