"""The pooling contract: :class:`BagPooling`, :func:`masked_softmax` and the input checks.

Every pooling maps padded bags of instance embeddings to genre logits and an attention::

    logits, attention = pooling(instances, mask, labels=None)

* ``instances`` : ``(B, N, D)`` float -- embeddings of the bag's instances (tracks), padded to
  the largest bag ``N`` of the batch;
* ``mask`` : ``(B, N)`` bool -- ``True`` for real instances, ``False`` for padding;
* ``labels`` : ``(B,)`` long or ``None`` -- only MATT uses it (the training query);
* ``logits`` : ``(B, C)`` -- unnormalised genre scores;
* ``attention`` : ``(B, N)`` weights over the bag (zero on padding, summing to one over real
  instances; an all-padding row gets all zeros), or ``(B, C, N)`` for MATT at inference (one
  distribution per genre query).

A new pooling subclasses :class:`BagPooling` (or :class:`PooledLinear`: pool, then one linear
classifier) in its own module and registers ``"name": "module:Class"`` in
:data:`mattlib.models.mil.POOLINGS`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BagPooling", "PooledLinear", "check_bags", "masked_softmax", "uniform_attention"]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask``.

    Parameters
    ----------
    scores : (..., N) float
    mask : (..., N) bool, broadcastable to ``scores``

    Returns
    -------
    (..., N) float: exactly zero where ``mask`` is False, summing to one over each row with at
    least one True; a row with no True gets all zeros (not NaN).
    """
    mask = mask.expand_as(scores)
    filled = scores.float().masked_fill(~mask, float("-inf"))
    empty = ~mask.any(dim=-1, keepdim=True)
    filled = filled.masked_fill(empty, 0.0)  # avoid softmax over all -inf (NaN)
    weights = torch.softmax(filled, dim=-1).masked_fill(~mask, 0.0)
    return weights.to(scores.dtype)


def check_bags(instances: torch.Tensor, mask: torch.Tensor, in_dim: int) -> None:
    """Raise ``ValueError`` unless ``instances`` is ``(B, N, in_dim)`` and ``mask`` a bool ``(B, N)``."""
    if instances.dim() != 3:
        raise ValueError(f"instances must be (B, N, D), got shape {tuple(instances.shape)}")
    if instances.shape[2] != in_dim:
        raise ValueError(f"instances have D={instances.shape[2]}, pooling expects in_dim={in_dim}")
    if mask.shape != instances.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool (B, N) = {tuple(instances.shape[:2])} tensor, got {mask.dtype} {tuple(mask.shape)}"
        )


def uniform_attention(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``1/n`` over each bag's ``n`` real instances, zero on padding (an empty bag: all zeros)."""
    m = mask.to(dtype)
    return m / m.sum(dim=1, keepdim=True).clamp_min(1.0)


class BagPooling(nn.Module):
    """Base class: ``forward(instances (B,N,D), mask (B,N), labels=None) -> (logits (B,C), attention)``.

    Subclasses set ``in_dim`` and ``n_classes``; one whose inference logits are already
    log-probabilities sets ``inference_log_probs = True`` (scores are then ``exp(logits)``,
    not a softmax).
    """

    in_dim: int
    n_classes: int
    inference_log_probs = False

    def __init__(self, *, in_dim: int, n_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 1:
            raise ValueError(f"in_dim and n_classes must be positive, got {in_dim}, {n_classes}")
        self.in_dim = int(in_dim)
        self.n_classes = int(n_classes)


class PooledLinear(BagPooling):
    """A pooling followed by dropout and one linear genre classifier ``M g + d``."""

    def __init__(self, *, in_dim: int, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_dim, n_classes)
