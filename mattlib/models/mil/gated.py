"""Gated attention pooling (``gated``, Ilse et al. 2018), beyond the paper."""

from __future__ import annotations

import torch
from torch import nn

from mattlib.models.mil.base import BagPooling, check_bags, masked_softmax

__all__ = ["GatedAttentionPooling"]


class GatedAttentionPooling(BagPooling):
    """Gated attention pooling (Ilse, Tomczak & Welling 2018), an option beyond the paper.

    ``a_k = w . (tanh(V s_k) * sigmoid(U s_k))``, ``alpha = softmax_k(a)`` over real instances,
    ``g = sum_k alpha_k s_k``, ``logits = M g + d``. One attention for all genres (no query);
    ``attention`` is ``(B, N)``.

    Parameters
    ----------
    in_dim, n_classes : int
    attention_dim : int, default 128
        Size L of the attention's hidden layer (not the encoder's ``hidden`` widths).
    dropout : float, default 0.0
    """

    def __init__(self, *, in_dim: int, n_classes: int, attention_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes)
        self.V = nn.Linear(in_dim, attention_dim)
        self.U = nn.Linear(in_dim, attention_dim)
        self.w = nn.Linear(attention_dim, 1)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_dim, n_classes)

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :mod:`mattlib.models.mil.base`; returns ``(B, C)`` logits and ``(B, N)`` attention."""
        check_bags(instances, mask, self.in_dim)
        a = self.w(torch.tanh(self.V(instances)) * torch.sigmoid(self.U(instances)))[..., 0]
        att = masked_softmax(a, mask)
        bag = torch.einsum("bn,bnd->bd", att.to(instances.dtype), instances)
        return self.classifier(self.drop(bag)), att
