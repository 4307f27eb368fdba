"""The musicnn network (Pons & Serra, 2019) in torch, with the trained weights of ``musicnn==0.1.0``.

The layers follow ``musicnn/models.py`` (``build_musicnn``) exactly, batch norms included:

* front end on the batch-normalised log-mel patch (time × 96 mels): two timbral convolutions (7 × 38
  and 7 × 67 mels, 204 filters each, time padded by 3) and three temporal ones (128, 64, 32 frames
  × 1 mel, 51 filters each, TensorFlow's "same" padding), each ReLU → batch norm → max over mels;
  561 features per frame;
* mid end: three 1-D convolutions over time (7 frames, 64 filters), ReLU → batch norm, the second
  and third residual; the dense concatenation gives 561 + 3 × 64 = 753 features per frame;
* back end: max and mean over time (``max_pool``, ``mean_pool``, 753 each), interleaved
  (max₀, mean₀, max₁, …) as TensorFlow's flatten of ``[max, mean]`` does, batch norm, dense 200 +
  ReLU + batch norm (``penultimate``), dense 50 (the tag logits).

Batch norms are TensorFlow 1's inference form, ``gamma (x - mean) / sqrt(var + 1e-3) + beta``.
The weights are read from the checkpoint files inside the installed ``musicnn`` package with
:func:`mattlib.features.musicnn_checkpoint.read_checkpoint`; TensorFlow is never imported.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mattlib import devices
from mattlib.errors import MattError
from mattlib.features.musicnn_checkpoint import CheckpointError, read_checkpoint

__all__ = ["MODELS", "MusicnnNotInstalled", "Musicnn", "checkpoint_prefix", "load_musicnn"]

_INSTALL = "pip install --no-deps musicnn==0.1.0 (make venv does it)"

#: Model name -> (number of tags, SHA-256 of the ``.index`` and of the ``.data-00000-of-00001`` file
#: shipped in the musicnn 0.1.0 wheel).
MODELS: dict[str, tuple[int, str, str]] = {
    "MSD_musicnn": (
        50,
        "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
        "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    ),
    "MTT_musicnn": (
        50,
        "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
        "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
    ),
}

_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default epsilon
_TEMPORAL = (128, 64, 32)  # frames of the three temporal filters


class MusicnnNotInstalled(MattError, RuntimeError):
    """The ``musicnn`` package (which ships the weights) is not installed."""


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown musicnn model {model!r}; valid: {', '.join(MODELS)}")


def checkpoint_prefix(model: str = "MSD_musicnn") -> str:
    """The checkpoint prefix of ``model`` inside the installed musicnn package (not imported).

    Returns
    -------
    str
        ``<site-packages>/musicnn/<model>/`` (its files are ``.index`` and ``.data-00000-of-00001``).

    Raises
    ------
    MusicnnNotInstalled
        musicnn is not installed.
    """
    _check_model(model)
    spec = importlib.util.find_spec("musicnn")
    if spec is None:
        raise MusicnnNotInstalled(f"musicnn (the weights of the {model} model) is not installed: {_INSTALL}")
    if not spec.submodule_search_locations:
        raise MusicnnNotInstalled(f"{spec.origin} hides the musicnn package (the weights): rename it, or {_INSTALL}")
    return str(Path(list(spec.submodule_search_locations)[0]) / model) + "/"


def _verify(prefix: str, model: str) -> None:
    """Compare the checkpoint files with the wheel's (SHA-256): a damaged file is one line."""
    _, *digests = MODELS[model]
    for suffix, want in zip((".index", ".data-00000-of-00001"), digests):
        path = Path(prefix + suffix)
        try:
            got = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise CheckpointError(
                f"{path}: cannot read the {model} checkpoint ({exc.strerror or exc}); "
                f"reinstall it: pip install --no-deps --force-reinstall musicnn==0.1.0"
            ) from None
        if got != want:
            raise CheckpointError(
                f"{path}: damaged (SHA-256 differs from musicnn 0.1.0's); "
                f"reinstall it: pip install --no-deps --force-reinstall musicnn==0.1.0"
            )


class _BatchNorm(nn.Module):
    """TF1 inference batch norm folded to ``x * scale + shift`` over dimension ``dim``."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.dim = dim
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("shift", torch.zeros(n))

    def load(self, w: dict, name: str) -> None:
        g, b = w[f"{name}/gamma"], w[f"{name}/beta"]
        m, v = w[f"{name}/moving_mean"], w[f"{name}/moving_variance"]
        # float64 folding, rounded once to float32
        scale = g.astype(np.float64) / np.sqrt(v.astype(np.float64) + _EPS)
        self.scale.copy_(torch.from_numpy(scale.astype(np.float32)))
        self.shift.copy_(torch.from_numpy((b - m * scale).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.ndim
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)

    def relu_max(self, z: torch.Tensor, dim: int) -> torch.Tensor:
        """``self(relu(z)).amax(dim)``, computed on the max and min of ``z`` only.

        ReLU and each channel's affine map are monotone (increasing where the scale is >= 0,
        decreasing elsewhere), so the max over ``dim`` of ``relu(z) * s + b`` is ``relu(max z) * s
        + b`` or ``relu(min z) * s + b``: the same floats, without two passes over the full map.
        """
        low, high = torch.aminmax(z, dim=dim)
        shape = [1] * low.ndim
        shape[self.dim] = -1
        return self(F.relu(torch.where(self.scale.view(shape) >= 0, high, low)))


class Musicnn(nn.Module):
    """musicnn (``MSD_musicnn`` / ``MTT_musicnn`` sizes: 64 mid-end filters, 200 back-end units).

    ``forward(x)`` takes log-mel patches ``(batch, 187, 96)`` (frames × mels, float32, the
    ``log10(10000 x + 1)`` of a power mel spectrogram) and returns a dict of ``taggram`` (batch, 50)
    sigmoid tag probabilities, ``penultimate`` (batch, 200), ``mean_pool`` and ``max_pool``
    (batch, 753).  Build it with :func:`load_musicnn`.
    """

    def __init__(self, n_tags: int = 50, n_mels: int = 96, midend: int = 64, units: int = 200):
        super().__init__()
        self.bn_input = _BatchNorm(1, 1)
        self.timbral = nn.ModuleList(
            [nn.Conv2d(1, 204, (7, int(f * n_mels))) for f in (0.4, 0.7)]  # models.py: int(0.4 * yInput)
        )
        self.bn_timbral = nn.ModuleList([_BatchNorm(204, 1) for _ in range(2)])
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in _TEMPORAL])
        self.bn_temporal = nn.ModuleList([_BatchNorm(51, 1) for _ in _TEMPORAL])
        front = 2 * 204 + 3 * 51
        self.mid = nn.ModuleList([nn.Conv1d(front if i == 0 else midend, midend, 7, padding=3) for i in range(3)])
        self.bn_mid = nn.ModuleList([_BatchNorm(midend, 1) for _ in range(3)])
        self.pool_dim = front + 3 * midend
        self.bn_pool = _BatchNorm(2 * self.pool_dim, 1)
        self.dense = nn.Linear(2 * self.pool_dim, units)
        self.bn_dense = _BatchNorm(units, 1)
        self.out = nn.Linear(units, n_tags)

    def load_tf(self, w: dict[str, np.ndarray]) -> None:
        """Copy the variables of a TF1 musicnn checkpoint (names as ``tf.layers`` numbered them)."""

        def conv2d(module, name):  # TF (kh, kw, in, out) -> torch (out, in, kh, kw)
            module.weight.copy_(torch.from_numpy(w[f"{name}/kernel"].transpose(3, 2, 0, 1).copy()))
            module.bias.copy_(torch.from_numpy(w[f"{name}/bias"]))

        def conv1d(module, name):  # TF (7, features, 1, out) -> torch (out, features, 7)
            module.weight.copy_(torch.from_numpy(w[f"{name}/kernel"][:, :, 0, :].transpose(2, 1, 0).copy()))
            module.bias.copy_(torch.from_numpy(w[f"{name}/bias"]))

        def dense(module, name):
            module.weight.copy_(torch.from_numpy(w[f"{name}/kernel"].T.copy()))
            module.bias.copy_(torch.from_numpy(w[f"{name}/bias"]))

        # creation order in models.py: bn, (conv, bn) x 5 front, (conv, bn) x 3 mid, bn, dense, bn, dense
        with torch.no_grad():
            self.bn_input.load(w, "batch_normalization")
            convs = list(self.timbral) + list(self.temporal)
            bns = list(self.bn_timbral) + list(self.bn_temporal)
            for i, (conv, bn) in enumerate(zip(convs, bns)):
                conv2d(conv, "conv2d" if i == 0 else f"conv2d_{i}")
                bn.load(w, f"batch_normalization_{i + 1}")
            for i, (conv, bn) in enumerate(zip(self.mid, self.bn_mid)):
                conv1d(conv, f"conv2d_{i + 5}")
                bn.load(w, f"batch_normalization_{i + 6}")
            self.bn_pool.load(w, "batch_normalization_9")
            dense(self.dense, "dense")
            self.bn_dense.load(w, "batch_normalization_10")
            dense(self.out, "dense_1")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 3:
            raise ValueError(f"musicnn takes patches (batch, frames, mels), got shape {tuple(x.shape)}")
        x = self.bn_input(x.unsqueeze(1))  # (B, 1, T, mels)
        feats = []
        padded = F.pad(x, (0, 0, 3, 3))
        for conv, bn in zip(self.timbral, self.bn_timbral):
            feats.append(bn.relu_max(conv(padded), 3))  # (B, 204, T): ReLU, batch norm, max over mels
        for conv, bn, k in zip(self.temporal, self.bn_temporal, _TEMPORAL):
            same = F.pad(x, (0, 0, (k - 1) // 2, k // 2))  # TF "same": the extra frame after
            feats.append(bn.relu_max(conv(same), 3))  # (B, 51, T)
        front = torch.cat(feats, dim=1)  # (B, 561, T)
        layers = [front]
        h = None
        for i, (conv, bn) in enumerate(zip(self.mid, self.bn_mid)):
            y = bn(F.relu(conv(front if i == 0 else h)))
            h = y if i == 0 else y + h
            layers.append(h)
        frames = torch.cat(layers, dim=1)  # (B, 753, T)
        max_pool, mean_pool = frames.amax(dim=2), frames.mean(dim=2)
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)  # max0, mean0, max1, ...
        penultimate = self.bn_dense(F.relu(self.dense(self.bn_pool(pooled))))
        taggram = torch.sigmoid(self.out(penultimate))
        return {"taggram": taggram, "penultimate": penultimate, "mean_pool": mean_pool, "max_pool": max_pool}


@functools.lru_cache(maxsize=4)
def _load_cpu(model: str) -> Musicnn:
    prefix = checkpoint_prefix(model)
    _verify(prefix, model)
    net = Musicnn(n_tags=MODELS[model][0])
    net.load_tf(read_checkpoint(prefix))
    return net.eval().requires_grad_(False)


def load_musicnn(model: str = "MSD_musicnn", *, device: str | torch.device = "auto") -> Musicnn:
    """The trained musicnn ``model`` in eval mode on ``device`` (CPU copies cached per process).

    Parameters
    ----------
    model : {"MSD_musicnn", "MTT_musicnn"}
        Trained on the Million Song Dataset's or MagnaTagATune's 50 top tags.
    device : 'auto', 'cpu', 'cuda' or a torch.device
        'auto': CUDA when present (:func:`mattlib.devices.resolve`).

    Raises
    ------
    MusicnnNotInstalled
        The musicnn package (which ships the weights) is not installed.
    CheckpointError
        A checkpoint file is missing or differs from the wheel's.

    Examples
    --------
    >>> net = load_musicnn("MSD_musicnn", device="cpu")
    >>> net(torch.zeros(2, 187, 96))["taggram"].shape
    torch.Size([2, 50])
    """
    _check_model(model)
    net = _load_cpu(model)
    device = torch.device(devices.resolve(device)) if isinstance(device, str) else device
    return net if device.type == "cpu" else _copy_to(net, device)


def _copy_to(net: Musicnn, device) -> Musicnn:
    import copy

    return copy.deepcopy(net).to(device)
