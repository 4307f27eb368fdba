"""The ``crnn_tf`` encoder (Wang et al. 2019): conv stack read by eight directional GRUs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mattlib.models.encoders.layers import BatchNorm, ConvBlock, check_shape, check_widths, run_gru

__all__ = ["CRNNTF"]


def _direction_orders(rows: int, cols: int) -> torch.Tensor:
    """Eight scan orders of a ``rows x cols`` grid, one per compass direction.

    Returns an ``(8, rows*cols)`` long tensor of flat cell indices (row-major numbering):
    along time (row-major) forwards / backwards, along mel (column-major) forwards / backwards,
    and along the two diagonals, each both ways.
    """
    r = torch.arange(rows).view(-1, 1).expand(rows, cols)
    c = torch.arange(cols).view(1, -1).expand(rows, cols)
    flat = (r * cols + c).reshape(-1)

    def order(key: torch.Tensor) -> torch.Tensor:
        return flat[torch.argsort(key.reshape(-1), stable=True)]

    big = rows * cols + 1
    time_fwd = order(r * big + c)  # rows in turn, time ascending
    mel_fwd = order(c * big + r)  # columns in turn, mel ascending
    diag_fwd = order((r + c) * big + r)  # anti-diagonals, top-left to bottom-right
    adiag_fwd = order((r - c + cols) * big + r)  # main diagonals, top-right to bottom-left
    fwds = [time_fwd, mel_fwd, diag_fwd, adiag_fwd]
    return torch.stack([o for f in fwds for o in (f, f.flip(0))])


class CRNNTF(nn.Module):
    """CRNN-TF (Wang et al. 2019): a conv stack read by recurrent units along time *and* mel.

    Input BatchNorm -> four blocks [3x3 conv (widths[i]) -> BatchNorm -> ELU -> max-pool
    (2, 4) over (mel, time)] -> adaptive max pool to a ``grid x grid`` map (6 x 6 on the
    paper's 96 x 1360 input, which the pools already bring to 6 x 6) -> eight GRU(``gru_hidden``),
    each reading the grid's cells (``widths[3]``-dim vectors) as one sequence in one of eight
    directions -> last hidden states concatenated (8 * gru_hidden) -> dropout -> dense
    ``out_dim`` (64) -> ELU.

    The eight directions are our reading of "both axes, both ways" for eight units: time
    (row-major) and mel (column-major) raster scans, plus the two diagonal scans, each
    forwards and backwards. The authors' repository (FishInMedi/CRNN-TF) was not available
    to check this detail.

    Parameters
    ----------
    input_shape : (n_mels, frames)
    widths : four ints
        Convolution widths (the study's: :attr:`mattlib.models.spec.ModelSpec.widths`).
    gru_hidden : int, default 32
    grid : int, default 6
    out_dim : int, default 64
    dropout : float, default 0.3
        Dropout before the dense layer (0.1 of it after every conv block).

    Shapes
    ------
    ``(K, n_mels, frames)`` -> ``(K, out_dim)``.
    """

    pool = (2, 4)

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        widths: Sequence[int],
        gru_hidden: int = 32,
        grid: int = 6,
        out_dim: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.input_shape = check_shape("crnn_tf", input_shape, 2)
        widths = check_widths("crnn_tf", widths)
        if grid < 1 or out_dim < 1 or gru_hidden < 1:
            raise ValueError("crnn_tf: grid, out_dim and gru_hidden must be positive")
        self.input_norm = BatchNorm(1)
        chans = (1, *widths)
        self.blocks = nn.Sequential(*[ConvBlock(chans[i], chans[i + 1], self.pool, dropout / 3) for i in range(4)])
        self.grid = int(grid)
        self.register_buffer("orders", _direction_orders(self.grid, self.grid), persistent=False)
        self.grus = nn.ModuleList([nn.GRU(widths[3], gru_hidden, batch_first=True) for _ in range(8)])
        self.drop = nn.Dropout(dropout)
        self.dense = nn.Linear(8 * gru_hidden, out_dim)
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode mel spectrograms ``(K, n_mels, frames)`` into ``(K, out_dim)``."""
        if x.dim() != 3:
            raise ValueError(f"crnn_tf: expected (K, n_mels, frames), got {tuple(x.shape)}")
        x = x.to(self.dense.weight.dtype).unsqueeze(1)
        h = self.blocks(self.input_norm(x))  # (K, C, mels', frames')
        h = F.adaptive_max_pool2d(h, (self.grid, self.grid))  # (K, C, grid, grid)
        cells = h.flatten(2).transpose(1, 2)  # (K, grid*grid, C), row-major
        states = []
        for gru, order in zip(self.grus, self.orders):
            states.append(run_gru(gru, cells[:, order]))
        z = torch.cat(states, dim=1)  # (K, 8 * gru_hidden)
        return F.elu(self.dense(self.drop(z)))
