"""The ``mlp`` encoder: a feed-forward network over a feature vector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mattlib.models.encoders.layers import BatchNorm, check_shape

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """Feed-forward encoder over a feature vector (any FMA feature set, 7 ... 518 dims).

    Parameters
    ----------
    input_shape : int or (d,)
        Feature dimension ``d``.
    hidden : sequence of int
        Hidden layer sizes; the last one is ``out_dim``. Empty -> identity (``out_dim = d``). The
        study's are :attr:`mattlib.models.spec.ModelSpec.hidden`.
    dropout : float, default 0.3
        Dropout after every hidden layer.
    input_norm : bool, default True
        BatchNorm (no affine) on the input, so unscaled FMA statistics are usable as they are.

    Shapes
    ------
    ``(K, d)`` -> ``(K, out_dim)``.
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int] | int,
        hidden: Sequence[int],
        dropout: float = 0.3,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        (d,) = check_shape("mlp", input_shape, 1)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mlp: dropout must be in [0, 1), got {dropout}")
        self.in_dim = d
        self.norm = BatchNorm(d, affine=False) if input_norm else nn.Identity()
        layers: list[nn.Module] = []
        size = d
        for h in hidden:
            if int(h) < 1:
                raise ValueError(f"mlp: hidden sizes must be positive, got {tuple(hidden)!r}")
            layers += [nn.Linear(size, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            size = int(h)
        self.body = nn.Sequential(*layers)
        self.out_dim = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` of shape ``(K, d)`` into ``(K, out_dim)``."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"mlp: expected (K, {self.in_dim}) features, got {tuple(x.shape)}")
        x = x.to(self.body[0].weight.dtype if len(self.body) else torch.float32)
        return self.body(self.norm(x))
