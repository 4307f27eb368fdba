"""The training settings (:class:`FitConfig`): every default written once, here.

:class:`mattlib.study.settings.Settings` takes its training defaults from this class and hands a
validated ``FitConfig`` to :func:`mattlib.training.fit` (``settings.fit``); torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mattlib.errors import MattError

__all__ = ["FitConfig", "TrainingError"]


class TrainingError(MattError, ValueError):
    """A training setting or input is not allowed; the message names it and what is allowed."""


@dataclass(frozen=True)
class FitConfig:
    """How :func:`mattlib.training.fit` trains: Adam(W), epochs, selection, loss.

    Parameters
    ----------
    epochs : int, default 30
        Maximum number of epochs (>= 1).
    batch_size : int, default 16
        Bags per step (>= 1).
    lr : float, default 1e-3
        AdamW learning rate (> 0).
    weight_decay : float, default 1e-4
        AdamW's decoupled weight decay (>= 0).
    patience : int or None, default 10
        Early-stopping patience in epochs (>= 1); None runs every epoch.
    class_weights : None, 'balanced' or (C,) floats, default None
        Cross-entropy class weights; 'balanced' = total / (C * count) of the training prior.
        Off by default (the paper has none).
    logit_adjustment : float, default 0.0
        tau of the logit-adjusted loss (Menon et al. 2021): the loss sees
        ``logits + tau * log(prior)``; predictions use the raw logits (>= 0; 0 = cross-entropy).
    seed : int, default 0
        Seeds python, numpy and torch (shuffling, dropout).
    device : {'auto', 'cpu', 'cuda'} or a device string, default 'auto'
        'auto' = CUDA when present (:func:`mattlib.devices.resolve`).
    amp : bool, default True
        bf16 autocast on CUDA (ignored on CPU).

    Examples
    --------
    >>> FitConfig(epochs=5).patience
    10
    >>> FitConfig(epochs=0)
    Traceback (most recent call last):
    ...
    mattlib.training.config.TrainingError: epochs must be >= 1, got 0
    """

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int | None = 10
    class_weights: str | Sequence[float] | None = None
    logit_adjustment: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise TrainingError(f"patience must be >= 1 or None, got {self.patience}")
        if not self.lr > 0 or self.weight_decay < 0 or self.logit_adjustment < 0:
            raise TrainingError(
                f"lr must be > 0 and weight_decay, logit_adjustment >= 0, got "
                f"{self.lr}, {self.weight_decay}, {self.logit_adjustment}"
            )
        if isinstance(self.class_weights, str) and self.class_weights != "balanced":
            raise TrainingError(f"class_weights must be None, 'balanced' or an array, got {self.class_weights!r}")
        if self.class_weights is not None and not isinstance(self.class_weights, str):
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
