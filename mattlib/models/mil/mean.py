"""Mean pooling (``mean``): the paper's "MIL" rows."""

from __future__ import annotations

import torch

from mattlib.models.mil.base import PooledLinear, check_bags, uniform_attention

__all__ = ["MeanPooling"]


class MeanPooling(PooledLinear):
    """Mean pooling: ``g = (1/n) sum_k s_k``, ``logits = M g + d``; attention uniform ``1/n``.

    We take this to be the paper's "MIL" baseline: the paper builds on OpenNRE's multi-instance
    framework, whose non-attentive bag aggregator is "average" (the mean of the instance
    representations, then one classifier), and it describes MIL as pooling the bag without
    attention; max pooling (:class:`MaxPooling`) is reported beside it as the other reading.
    """

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See :mod:`mattlib.models.mil.base`; returns ``(B, C)`` logits and ``(B, N)`` uniform attention."""
        check_bags(instances, mask, self.in_dim)
        att = uniform_attention(mask, instances.dtype)
        bag = torch.einsum("bn,bnd->bd", att, instances)
        return self.classifier(self.drop(bag)), att
