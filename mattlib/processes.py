"""Child processes that do not outlive their ``matt``: a feature worker or a papermill cell asks the
kernel to stop it when its parent dies, even by SIGKILL."""

from __future__ import annotations

import ctypes
import os

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
try:  # loaded here, not in the child: a forked child must not load libraries
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def die_with_parent(parent: int | None = None, sig: int = 15) -> None:
    """Ask the kernel to send ``sig`` (default SIGTERM) to this process when its parent dies,
    even by SIGKILL (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing happens).

    Call it in a child: a worker initializer, or ``preexec_fn`` of a subprocess. ``parent`` (the
    pid that started the child) closes the race of a parent that died before the call.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig)
        if parent is not None and os.getppid() != parent:
            os.kill(os.getpid(), sig)
