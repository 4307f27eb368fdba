"""Max pooling (``max``): the other reading of the paper's "MIL" rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mattlib.models.mil.base import PooledLinear, check_bags

__all__ = ["MaxPooling"]


class MaxPooling(PooledLinear):
    """Max pooling: ``g_j = max_k s_kj`` per feature dim ``j``; ``logits = M g + d``.

    ``attention[b, k]`` is the fraction of the D feature dims that instance k wins (holds the
    maximum of), so it sums to one over the bag and is zero on padding. An all-padding bag
    gives ``g = 0`` and zero attention.
    """

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :mod:`mattlib.models.mil.base`; returns ``(B, C)`` logits and ``(B, N)`` win fractions."""
        check_bags(instances, mask, self.in_dim)
        filled = instances.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        bag, winner = filled.max(dim=1)  # (B, D), (B, D)
        has_any = mask.any(dim=1)
        bag = torch.where(has_any.unsqueeze(-1), bag, torch.zeros_like(bag))
        wins = F.one_hot(winner, instances.shape[1]).to(instances.dtype).mean(dim=1)  # (B, N)
        att = wins * has_any.unsqueeze(-1).to(wins.dtype)
        return self.classifier(self.drop(bag)), att
