"""Encoder + pooling over padded bags (OpenNRE's "bag model")."""

from __future__ import annotations

import torch
from torch import nn

from mattlib.models.mil.base import BagPooling

__all__ = ["BagModel"]


class BagModel(nn.Module):
    """Encoder + bag pooling over padded bags (OpenNRE's "bag model").

    Parameters
    ----------
    encoder : nn.Module with ``out_dim``
        Maps ``(K, *instance_shape)`` to ``(K, D)``.
    pooling : BagPooling
        With ``in_dim == encoder.out_dim``.

    ``forward(instances (B, N, *instance_shape), mask (B, N) bool, labels=None)`` encodes only
    the real (masked-in) instances, scatters the embeddings back into a zero-padded
    ``(B, N, D)`` tensor and pools it; returns ``(logits (B, C), attention)`` as the pooling.
    """

    def __init__(self, encoder: nn.Module, pooling: BagPooling) -> None:
        super().__init__()
        out_dim = getattr(encoder, "out_dim", None)
        if out_dim is None:
            raise ValueError("encoder must have an out_dim attribute")
        if int(out_dim) != pooling.in_dim:
            raise ValueError(f"encoder.out_dim={out_dim} but pooling.in_dim={pooling.in_dim}")
        self.encoder = encoder
        self.pooling = pooling

    @property
    def n_classes(self) -> int:
        """Number of genres C."""
        return self.pooling.n_classes

    def forward(
        self,
        instances: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        encode_chunk: int | None = None,
    ):
        """Encode and pool a padded batch of bags (see the class docstring).

        ``encode_chunk``: encode at most this many instances at once (eval mode: the same
        embeddings as in one piece), then pool every instance of the bag together.
        """
        if instances.dim() < 3:
            raise ValueError(f"instances must be (B, N, ...), got shape {tuple(instances.shape)}")
        if mask.shape != instances.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(instances.shape[:2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        real = instances[mask]  # (K, ...), K = number of real instances
        if encode_chunk and len(real) > encode_chunk:
            z = torch.cat([self.encoder(part) for part in torch.split(real, encode_chunk)])
        else:
            z = self.encoder(real)  # (K, D)
        emb = z.new_zeros(*mask.shape, z.shape[-1])
        emb[mask] = z
        return self.pooling(emb, mask, labels)
