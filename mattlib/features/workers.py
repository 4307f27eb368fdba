"""The worker side of bulk extraction: what runs in a pool process (or a Ray task) per chunk.

Module-level functions only, so that a chunk's function (bound with :func:`functools.partial`)
pickles for the process pool and for Ray. :func:`_init_worker` sets up a local worker process;
:func:`_in_one_blas_thread` gives a Ray task the same one-BLAS-thread setting.
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable
from typing import Any

from mattlib.features.audio import AudioError
from mattlib.features.kinds import FeatureKind
from mattlib.features.mel import MelSettings, mel_audio
from mattlib.processes import die_with_parent


def _single_blas_thread():
    """Context: one BLAS/OpenMP thread.  Our matrix products are small (e.g. 96 × 257 @ 257 ×
    1360); multi-threaded OpenBLAS spends more time synchronising than computing (2× slower on a
    busy 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl missing
        import contextlib

        return contextlib.nullcontext()


def _init_worker(parent: int) -> None:
    # one BLAS/OpenMP thread per worker process: `jobs` processes already fill the cores
    _single_blas_thread()
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker must not inherit matt's handler
    die_with_parent(parent)  # a SIGKILLed parent leaves no worker behind


def _in_one_blas_thread(fn: Callable, chunk: list):
    """``fn(chunk)`` as a local worker runs it: one BLAS/OpenMP thread, warnings off."""
    with _single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(chunk)


def _work(items: list[tuple[int, str]], kind: FeatureKind, settings) -> list[tuple[int, Any, bool, str | None]]:
    """``kind``'s per-clip function over a chunk: ``(track_id, value, padded, error)`` per clip."""
    out = []
    for tid, path in items:
        try:
            value, padded = kind(path, settings)
            out.append((tid, value, bool(padded), None))
        except Exception as exc:  # never stop the run: record and continue
            out.append((tid, None, False, _describe(exc)))
    return out


def _work_mel_audio(items, settings: MelSettings):
    """The decoded, cropped audio of a chunk (the CUDA path computes the log-mel batched)."""
    out = []
    for tid, path in items:
        try:
            y, padded = mel_audio(path, settings)
            out.append((tid, y, padded, None))
        except Exception as exc:
            out.append((tid, None, False, _describe(exc)))
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AudioError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"
