"""The ``crnn`` encoder (Choi et al. 2017) over a log-mel spectrogram."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mattlib.models.encoders.layers import BatchNorm, ConvBlock, check_shape, check_widths, run_gru

__all__ = ["CRNN"]


class CRNN(nn.Module):
    """Choi et al. (2017) convolutional recurrent network over a log-mel spectrogram.

    Input BatchNorm -> four blocks [3x3 conv (widths[i]) -> BatchNorm -> ELU -> max-pool]
    with pools (2,2), (3,3), (4,4), (4,4) over (mel, time) -> max over the remaining mel
    rows -> two stacked GRU(``gru_hidden``) over time -> last hidden state.

    On 96 x 1360 the conv stack leaves a 1 x 15 map (15 time steps of ``widths[3]``
    channels), as in the original (which zero-padded 1366 frames to 1440). Shorter inputs
    leave fewer steps (at least one).

    Parameters
    ----------
    input_shape : (n_mels, frames)
    widths : four ints
        Conv channel widths (the study's: :attr:`mattlib.models.spec.ModelSpec.widths`).
    gru_hidden : int, default 32
        GRU size; ``out_dim = gru_hidden``.
    dropout : float, default 0.1
        Dropout after every conv block and on the output (Choi et al. used 0.1 / 0.3).

    Shapes
    ------
    ``(K, n_mels, frames)`` -> ``(K, gru_hidden)``.
    """

    pools = ((2, 2), (3, 3), (4, 4), (4, 4))

    def __init__(
        self,
        *,
        input_shape: Sequence[int],
        widths: Sequence[int],
        gru_hidden: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_shape = check_shape("crnn", input_shape, 2)
        widths = check_widths("crnn", widths)
        self.input_norm = BatchNorm(1)
        chans = (1, *widths)
        self.blocks = nn.Sequential(*[ConvBlock(chans[i], chans[i + 1], self.pools[i], dropout) for i in range(4)])
        self.gru = nn.GRU(widths[3], gru_hidden, num_layers=2, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out_dim = int(gru_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode mel spectrograms ``(K, n_mels, frames)`` into ``(K, out_dim)``."""
        if x.dim() != 3:
            raise ValueError(f"crnn: expected (K, n_mels, frames), got {tuple(x.shape)}")
        x = x.to(self.blocks[0].conv.weight.dtype).unsqueeze(1)  # (K, 1, mels, frames)
        h = self.blocks(self.input_norm(x))  # (K, C, mels', frames')
        seq = h.amax(dim=2).transpose(1, 2)  # (K, frames', C)
        return self.drop(run_gru(self.gru, seq))  # (K, hidden)
