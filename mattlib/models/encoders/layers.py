"""Layers and checks the encoders share (BatchNorm for batches of one, conv blocks, GRU runs)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchNorm", "ConvBlock", "check_shape", "check_widths", "pad_max_pool", "run_gru"]


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm that falls back to running statistics for a training batch of one.

    ``BatchNorm1d`` refuses to normalise a single training sample (one value per channel);
    bags of one track and small last batches make that case reachable, so we use the running
    statistics for it instead of failing.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:  # noqa: A002 - torch's name
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected a 2-D, 3-D or 4-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        per_channel = input.numel() // max(input.shape[1], 1)
        if self.training and per_channel <= 1:
            return F.batch_norm(
                input,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                False,
                0.0,
                self.eps,
            )
        return super().forward(input)


def run_gru(gru: nn.GRU, seq: torch.Tensor) -> torch.Tensor:
    """Last-layer final hidden state ``(K, hidden)`` of ``gru`` over ``seq`` ``(K, T, F)``.

    Runs in float32 with autocast off: the recurrent part is small (32 units) and this keeps
    bf16 mixed precision on CUDA away from cuDNN's RNN kernels.
    """
    with torch.autocast(device_type=seq.device.type, enabled=False):
        _, last = gru(seq.float())
    return last[-1]


def check_shape(name: str, input_shape: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    """``input_shape`` as a tuple of ``ndim`` positive ints; ``ValueError`` naming encoder ``name`` otherwise."""
    shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
    if len(shape) != ndim or any(s < 1 for s in shape):
        want = "(d,)" if ndim == 1 else "(n_mels, frames)"
        raise ValueError(f"{name}: input_shape must be {want} with positive sizes, got {input_shape!r}")
    return shape


def check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    """Four positive conv channel widths as a tuple; ``ValueError`` naming encoder ``name`` otherwise."""
    widths = tuple(int(w) for w in widths)
    if len(widths) != 4 or any(w < 1 for w in widths):
        raise ValueError(f"{name}: widths must be four positive channel counts, got {widths!r}")
    return widths


def pad_max_pool(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Max-pool ``(K, C, H, W)`` by ``kernel`` (stride = kernel), keeping at least one cell.

    The map is right/bottom-padded with its own minimum so that every axis is at least one
    window long and windows at the edge are partial (``ceil_mode``); padding never wins a max.
    """
    kh, kw = kernel
    h, w = x.shape[-2:]
    ph = max(kh - h, 0)
    pw = max(kw - w, 0)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return F.max_pool2d(x, kernel_size=kernel, stride=kernel, ceil_mode=True)


class ConvBlock(nn.Module):
    """3x3 conv (same padding) -> BatchNorm -> ELU -> max-pool -> dropout."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int], dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = pool
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(pad_max_pool(F.elu(self.bn(self.conv(x))), self.pool))
