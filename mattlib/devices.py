"""Which device a computation runs on: the one resolver every stage uses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["resolve", "gpu_count"]


def _cuda_available() -> bool:
    # importing torch costs ~1.5 s: skip it on machines without an NVIDIA driver
    if "torch" not in sys.modules and not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


def resolve(device: str | None = "auto") -> str:
    """The device to run on.

    Parameters
    ----------
    device : {"auto", None, "cpu", "cuda", "cuda:<i>"}
        ``"auto"`` / None: CUDA when it is available, else the CPU.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.

    Raises
    ------
    ValueError
        An unknown device, or CUDA asked for where there is none.

    Examples
    --------
    >>> resolve("cpu")
    'cpu'
    """
    if device in (None, "auto"):
        return "cuda" if _cuda_available() else "cpu"
    if not isinstance(device, str) or (device not in ("cpu", "cuda") and not device.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    if device.startswith("cuda") and not _cuda_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    return device


def gpu_count() -> int:
    """CUDA GPUs visible to ``nvidia-smi`` (0 without a driver), without importing torch."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())
