"""Instance encoders: one track (an *instance* of a bag) -> one embedding vector.

Three encoders share one contract (OpenNRE's split between *encoder* and *bag model*):

* ``forward(x)`` takes a batch of instances and returns ``(K, out_dim)`` float embeddings;
* ``out_dim`` (int attribute) is the embedding size the bag pooling (``mattlib.models.mil``) reads.

========  ===================================  ===========================================
name      instance input ``x``                 architecture
========  ===================================  ===========================================
``mlp``   ``(K, d)`` feature vector            input BatchNorm -> [Linear -> ReLU -> Dropout]*
``crnn``  ``(K, n_mels, frames)`` log-mel      Choi et al. 2017: 4 conv blocks + 2 GRU(32)
``crnn_tf`` ``(K, n_mels, frames)`` log-mel    Wang et al. 2019: 4 conv blocks -> 6x6 grid
                                               -> eight directional GRU(32) -> dense 64
========  ===================================  ===========================================

Mel inputs may be ``float16`` (the memmapped cache); they are cast to the encoder's dtype.
Any ``n_mels >= 1`` and ``frames >= 1`` is accepted: pooling windows larger than the remaining
map are padded, and CRNN-TF's fixed 6x6 grid comes from adaptive max pooling, so the paper's
96 x 1360 clips and the demo's short clips (e.g. 96 x 469, 32 x 64) both work.

Use :func:`make_encoder` to build one by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ENCODERS",
    "CRNN",
    "CRNNTF",
    "MLPEncoder",
    "make_encoder",
]


class _BatchNorm(nn.modules.batchnorm._BatchNorm):
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


def _run_gru(gru: nn.GRU, seq: torch.Tensor) -> torch.Tensor:
    """Last-layer final hidden state ``(K, hidden)`` of ``gru`` over ``seq`` ``(K, T, F)``.

    Runs in float32 with autocast off: the recurrent part is small (32 units) and this keeps
    bf16 mixed precision on CUDA away from cuDNN's RNN kernels.
    """
    with torch.autocast(device_type=seq.device.type, enabled=False):
        _, last = gru(seq.float())
    return last[-1]


def _check_shape(name: str, input_shape: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
    if len(shape) != ndim or any(s < 1 for s in shape):
        want = "(d,)" if ndim == 1 else "(n_mels, frames)"
        raise ValueError(f"{name}: input_shape must be {want} with positive sizes, got {input_shape!r}")
    return shape


def _check_widths(name: str, widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if len(widths) != 4 or any(w < 1 for w in widths):
        raise ValueError(f"{name}: widths must be four positive channel counts, got {widths!r}")
    return widths


def _pool(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
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


class _ConvBlock(nn.Module):
    """3x3 conv (same padding) -> BatchNorm -> ELU -> max-pool -> dropout."""

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int], dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(c_out)
        self.pool = pool
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(_pool(F.elu(self.bn(self.conv(x))), self.pool))


class MLPEncoder(nn.Module):
    """Feed-forward encoder over a feature vector (any FMA feature set, 7 ... 518 dims).

    Parameters
    ----------
    input_shape : int or (d,)
        Feature dimension ``d``.
    hidden : sequence of int, default (256,)
        Hidden layer sizes; the last one is ``out_dim``. Empty -> identity (``out_dim = d``).
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
        hidden: Sequence[int] = (256,),
        dropout: float = 0.3,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        (d,) = _check_shape("mlp", input_shape, 1)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mlp: dropout must be in [0, 1), got {dropout}")
        self.in_dim = d
        self.norm = _BatchNorm(d, affine=False) if input_norm else nn.Identity()
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
    widths : four ints, default (64, 128, 128, 128)
        Conv channel widths (CPU demos pass e.g. (16, 32, 32, 32)).
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
        widths: Sequence[int] = (64, 128, 128, 128),
        gru_hidden: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.input_shape = _check_shape("crnn", input_shape, 2)
        widths = _check_widths("crnn", widths)
        self.input_norm = _BatchNorm(1)
        chans = (1, *widths)
        self.blocks = nn.Sequential(*[_ConvBlock(chans[i], chans[i + 1], self.pools[i], dropout) for i in range(4)])
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
        return self.drop(_run_gru(self.gru, seq))  # (K, hidden)


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
    widths : four ints, default (64, 128, 128, 128)
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
        widths: Sequence[int] = (64, 128, 128, 128),
        gru_hidden: int = 32,
        grid: int = 6,
        out_dim: int = 64,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.input_shape = _check_shape("crnn_tf", input_shape, 2)
        widths = _check_widths("crnn_tf", widths)
        if grid < 1 or out_dim < 1 or gru_hidden < 1:
            raise ValueError("crnn_tf: grid, out_dim and gru_hidden must be positive")
        self.input_norm = _BatchNorm(1)
        chans = (1, *widths)
        self.blocks = nn.Sequential(*[_ConvBlock(chans[i], chans[i + 1], self.pool, dropout / 3) for i in range(4)])
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
            states.append(_run_gru(gru, cells[:, order]))
        z = torch.cat(states, dim=1)  # (K, 8 * gru_hidden)
        return F.elu(self.dense(self.drop(z)))


ENCODERS: dict[str, type[nn.Module]] = {"mlp": MLPEncoder, "crnn": CRNN, "crnn_tf": CRNNTF}


def make_encoder(name: str, *, input_shape: Sequence[int] | int, **kwargs) -> nn.Module:
    """Build an instance encoder by name.

    Parameters
    ----------
    name : {'mlp', 'crnn', 'crnn_tf'}
    input_shape : int or tuple
        ``(d,)`` (or ``d``) for ``mlp``; ``(n_mels, frames)`` for the CRNNs.
    **kwargs
        Passed to the encoder (``hidden``, ``dropout``, ``widths``, ``gru_hidden``, ...).

    Returns
    -------
    torch.nn.Module with an ``out_dim`` attribute.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names) or a bad shape.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](input_shape=input_shape, **kwargs)
