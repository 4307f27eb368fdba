"""Where and how a model runs: the torch device, seeding, bf16 autocast, CPU determinism."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from mattlib import devices

__all__ = ["autocast", "chunk_kwargs", "deterministic_on_cpu", "resolve_device", "seed_everything"]


def resolve_device(device: str | torch.device) -> torch.device:
    """:func:`mattlib.devices.resolve` as a ``torch.device`` (a ``torch.device`` passes through).

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    return device if isinstance(device, torch.device) else torch.device(devices.resolve(device))


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a torch Generator seeded likewise."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def chunk_kwargs(encode_chunk: int | None) -> dict:
    """``BagModel.forward`` keywords that encode at most ``encode_chunk`` instances at once."""
    return {"encode_chunk": encode_chunk} if encode_chunk else {}


@contextlib.contextmanager
def deterministic_on_cpu(device: torch.device):
    """Deterministic algorithms on (warn-only) for a CPU run, restored afterwards; CUDA runs are
    left as they are (not bit-exact)."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
