"""Running bulk extraction's chunks: work units of tracks, in local worker processes (a
:class:`~mattlib.executors.LocalExecutor`) or as Ray tasks (a :class:`~mattlib.executors.RayExecutor`),
results fed back to the main process, which alone writes the cache."""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable

from mattlib.executors import LocalExecutor
from mattlib.features.workers import _in_one_blas_thread, _init_worker, _single_blas_thread


def _local(executor) -> bool:
    """Whether chunks run on this machine: ``executor`` is None or a :class:`LocalExecutor`
    (``jobs`` worker processes, started here with the extractor's start method and worker set-up)."""
    return executor is None or isinstance(executor, LocalExecutor)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _default_chunk(n: int, jobs: int, cap: int) -> int:
    return max(1, min(cap, -(-n // (4 * jobs)) if n else 1))


def _mp_context(use_cuda: bool):
    methods = multiprocessing.get_all_start_methods()
    # fork starts instantly and inherits warm imports; never fork a process that holds CUDA
    if "fork" in methods and not use_cuda and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run(
    fn: Callable, chunks: list[list], *, jobs: int, use_cuda: bool, on_result: Callable, bar, executor=None
) -> None:
    """Run ``fn(chunk)`` for every chunk (in ``jobs`` processes, or as Ray tasks of an
    ``executor``) and feed results to ``on_result`` in the main process, at most ``2 * jobs``
    chunks in flight (bounded memory)."""
    if not _local(executor):  # mattlib.executors.RayExecutor: one CPU task per chunk
        # the same one-BLAS-thread setting as a local worker, so both give the same bytes
        for res in executor.map_unordered(functools.partial(_in_one_blas_thread, fn), chunks):
            on_result(res)
            bar.update(len(res))
        return
    if jobs <= 1 or len(chunks) <= 1:
        with _single_blas_thread():
            for chunk in chunks:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fn(chunk)
                on_result(res)
                bar.update(len(chunk))
        return
    # on Ctrl-C or an error no queued chunk starts (finished ones are already saved); leaving
    # waits for the running ones
    with LocalExecutor(
        jobs, mp_context=_mp_context(use_cuda), initializer=_init_worker, initargs=(os.getpid(),)
    ) as pool:
        for res in pool.map_unordered(fn, chunks):  # 2 * jobs chunks in flight
            on_result(res)
            bar.update(len(res))


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="track", disable=not enabled, smoothing=0.1, dynamic_ncols=True)
