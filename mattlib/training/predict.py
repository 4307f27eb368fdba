"""Scoring bags with a trained model: :func:`predict` -> :class:`Predictions` (scores and attention)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from mattlib.training.bags import BagDataset, bag_loader
from mattlib.training.runtime import autocast, chunk_kwargs, resolve_device

__all__ = ["Predictions", "predict"]


@dataclass
class Predictions:
    """Bag-level outputs of :func:`predict`.

    Attributes
    ----------
    bag_ids : list of str (n_bags)
    scores : ndarray (n_bags, C)
        Genre probabilities: a softmax, or for MATT each genre's probability under its own
        query (rows need not sum to one).
    labels : ndarray (n_bags,)
        The dataset's bag labels (class indices).
    attention : list of ndarray
        Per bag, a 1-D array over its instances (in membership order): the attention of the
        predicted genre's query for MATT, the pooling's weights otherwise.
    attention_all : list of ndarray (C, n) or None
        MATT only, when requested: one distribution per genre query.
    classes : list of str
    """

    bag_ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    attention: list[np.ndarray]
    attention_all: list[np.ndarray] | None
    classes: list[str]

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class index per bag, (n_bags,)."""
        return self.scores.argmax(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """Scores as a DataFrame (index ``bag_id``, one column per genre).

        For bags of one (``bag_id = str(track_id)``), ``frame.set_axis(frame.index.astype(int))``
        gives the track-indexed probabilities that :func:`mattlib.models.mil.late_fusion` accepts.
        """
        return pd.DataFrame(self.scores, index=pd.Index(self.bag_ids, name="bag_id"), columns=self.classes)


def predict(
    model: nn.Module,
    data: BagDataset,
    *,
    device: str | torch.device,
    inference_batch: int = 32,
    all_attention: bool = False,
    amp: bool = True,
    encode_chunk: int | None = None,
) -> Predictions:
    """Score every bag of ``data`` (model in eval mode, no labels passed).

    Parameters
    ----------
    model : nn.Module
        As for :func:`fit`.
    data : BagDataset
    device : 'auto', 'cpu', 'cuda' or a torch.device
        Where to run (the fit's ``FitConfig.device``).
    inference_batch : int, default 32
        Bags scored at once (memory only: scores do not depend on it; not the training
        ``batch_size``).
    all_attention : bool, default False
        Also keep MATT's (C, n) attention per bag.
    amp : bool, default True
        bf16 autocast on CUDA.
    encode_chunk : int, optional
        Score one whole bag at a time, encoding at most this many instances at once and pooling
        all of them (the same prediction as in one piece; bounded memory on large albums).

    Returns
    -------
    Predictions
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    log_probs = getattr(getattr(model, "pooling", None), "inference_log_probs", False)
    ids: list[str] = []
    scores, labels = [], []
    att_pred: list[np.ndarray] = []
    att_all: list[np.ndarray] = []
    with torch.no_grad():
        for batch in bag_loader(data, batch_size=1 if encode_chunk else inference_batch, shuffle=False, device=dev):
            batch = batch.to(dev)
            with autocast(dev, amp):
                logits, att = model(batch.instances, batch.mask, **chunk_kwargs(encode_chunk))
            probs = logits.float().exp() if log_probs else torch.softmax(logits.float(), dim=1)
            pred = probs.argmax(1)
            att = att.float()
            sizes = batch.mask.sum(1).tolist()
            for b, n in enumerate(sizes):
                if att.dim() == 3:
                    att_pred.append(att[b, pred[b], :n].cpu().numpy())
                    if all_attention:
                        att_all.append(att[b, :, :n].cpu().numpy())
                else:
                    att_pred.append(att[b, :n].cpu().numpy())
            ids.extend(batch.bag_ids)
            scores.append(probs.cpu().numpy())
            labels.append(batch.labels.cpu().numpy())
    return Predictions(
        bag_ids=ids,
        scores=np.concatenate(scores),
        labels=np.concatenate(labels),
        attention=att_pred,
        attention_all=att_all if (all_attention and att_all) else None,
        classes=list(data.classes),
    )
