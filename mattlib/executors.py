"""Where the study's work runs: on this machine, or on a Ray cluster.

Two executors with one interface (a context manager, ``map_unordered(fn, items, resources=...)``)
sit behind one seam in :mod:`mattlib.runner` (grid cells) and :mod:`mattlib.features`
(extraction chunks):

- ``"local"`` (the default, no Ray needed): a :class:`LocalExecutor`, a pool of worker processes
  or threads on this machine. :mod:`mattlib.features` takes ``executor=None`` or a
  :class:`LocalExecutor` for it (its ``jobs`` worker processes, started by the extractor);
  :func:`mattlib.runner.run_grid` runs its own ``jobs`` threads for it.
- ``"ray"``: a :class:`RayExecutor`. Each work unit (a grid cell, a chunk of tracks) becomes a
  Ray task with its own resource request; results come back to the driver, which writes the cache
  and the run folder exactly as locally (same layout, same resume and failure semantics).

Workers run in the driver's working directory, so relative paths in a params file mean the same
on every node; on a cluster that folder (data, cache, outputs) must be on shared storage mounted
at the same path everywhere.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mattlib.errors import MattError

__all__ = [
    "EXECUTORS",
    "JOBS",
    "RESOURCE_KEYS",
    "ExecutorError",
    "ExecutorOptionError",
    "LocalExecutor",
    "RayExecutor",
    "open_executor",
    "validate_resources",
]

#: How many things run at once on this machine unless told (``jobs``: extraction worker processes,
#: grid cells, notebooks rendered); each of ``jobs`` grid cells gets ``cpu_count // jobs`` threads.
JOBS = 2
#: Executor names (``--executor``).
EXECUTORS = ("local", "ray")
#: Resource requests a params file may give a notebook entry (Ray's names; the local executor
#: ignores them: there ``--jobs`` sets the parallelism).
RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")

_NO_RAY = "--executor ray needs Ray, an optional extra: pip install 'mattlib[ray]' (or pip install 'ray[default]')"


class ExecutorOptionError(MattError, ValueError):
    """An executor asked for what it cannot give (an unknown name or resource, a misplaced option)."""


class ExecutorError(MattError, RuntimeError):
    """The executor cannot be used (Ray missing, cluster unreachable); one line naming the fix."""


def validate_resources(value: Any, *, where: str) -> dict[str, float]:
    """Check a ``resources`` mapping of a params file; returns it with float values.

    Raises
    ------
    ValueError
        On an unknown key or a negative / non-numeric amount (one line naming the valid keys).
    TypeError
        If ``value`` is not a mapping.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: resources must be a mapping of {', '.join(RESOURCE_KEYS)}, got {value!r}")
    out = {}
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            raise ExecutorOptionError(f"{where}: unknown resource {key!r}; valid: {', '.join(RESOURCE_KEYS)}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise ExecutorOptionError(f"{where}: resource {key} must be a number >= 0, got {amount!r}")
        out[key] = float(amount)
    return out


def _call_in(cwd: str, fn: Callable, item: Any) -> Any:
    """Ray task body: run ``fn(item)`` in the driver's working directory."""
    if os.getcwd() != cwd:
        os.chdir(cwd)
    return fn(item)


def _available_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalExecutor:
    """Run work units on this machine, in a pool of worker processes or threads; use as a context
    manager (the interface of :class:`RayExecutor`).

    The pool starts on the first :meth:`map_unordered` and lives until the executor exits, which
    waits for the work units still running.

    Parameters
    ----------
    max_workers : int, optional
        Workers of the pool (default: the CPUs this process may run on).
    processes : bool, default True
        Worker processes (:class:`concurrent.futures.ProcessPoolExecutor`: ``fn``, the items and
        the results must be picklable) or threads of this process (``processes=False``,
        :class:`concurrent.futures.ThreadPoolExecutor`: any callable).
    mp_context : multiprocessing context, optional
        How worker processes start (``fork``, ``spawn``; default: multiprocessing's default).
        Worker processes only.
    initializer : callable, optional
        Called with ``initargs`` in every worker (process or thread) as it starts.
    initargs : tuple
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        processes: bool = True,
        mp_context=None,
        initializer: Callable | None = None,
        initargs: tuple = (),
    ) -> None:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if mp_context is not None and not processes:
            raise ValueError("mp_context starts worker processes: use it with processes=True")
        self.max_workers = max_workers if max_workers is not None else _available_cpus()
        self.processes = processes
        self.mp_context = mp_context
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self._entered = False
        self._pool: cf.Executor | None = None

    def __enter__(self) -> LocalExecutor:  # noqa: PYI034 (typing.Self needs Python 3.11)
        self._entered = True
        return self

    def __exit__(self, exc_type, *exc) -> None:
        pool, self._pool, self._entered = self._pool, None, False
        if pool is not None:
            # leaving on an error or Ctrl-C: no queued unit starts; the running ones finish first
            pool.shutdown(wait=True, cancel_futures=exc_type is not None)

    def _started_pool(self) -> cf.Executor:
        if self._pool is None:
            if self.processes:
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=self.max_workers,
                    mp_context=self.mp_context,
                    initializer=self.initializer,
                    initargs=self.initargs,
                )
            else:
                self._pool = cf.ThreadPoolExecutor(
                    max_workers=self.max_workers, initializer=self.initializer, initargs=self.initargs
                )
        return self._pool

    def map_unordered(
        self,
        fn: Callable,
        items: Iterable,
        *,
        resources: Callable[[Any], Mapping[str, float]] | None = None,
        max_in_flight: int | None = None,
    ) -> Iterator:
        """Yield ``fn(item)`` for every item, in completion order.

        ``resources`` is taken for :class:`RayExecutor`'s interface and ignored: here
        ``max_workers`` sets the parallelism. At most ``max_in_flight`` items are submitted at a
        time (default twice ``max_workers``), so memory stays bounded. An exception of
        ``fn(item)`` is raised here. If the consumer stops (an exception, Ctrl-C), items not yet
        started are cancelled; those running finish, and the executor's exit waits for them.
        """
        if not self._entered:
            raise RuntimeError("LocalExecutor must be entered (`with LocalExecutor() as ex:`) before use")
        if max_in_flight is None:
            max_in_flight = 2 * self.max_workers
        pool = self._started_pool()
        pending: set[cf.Future] = set()
        it = iter(items)
        try:
            for item in it:
                pending.add(pool.submit(fn, item))
                if len(pending) >= max_in_flight:
                    break
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                    for item in it:  # one finished, one more submitted
                        pending.add(pool.submit(fn, item))
                        break
        finally:
            for future in pending:
                future.cancel()


class RayExecutor:
    """Run work units as Ray tasks; use as a context manager.

    Parameters
    ----------
    address : str, optional
        A running cluster to join (``ray start --head`` printed it; ``"auto"`` finds one started
        on this node). Default: a Ray instance started here and stopped on exit. A process that
        already called ``ray.init`` keeps its connection.
    num_cpus : int, optional
        CPUs of the Ray instance started here (default: all); ignored with ``address``.

    Raises
    ------
    ExecutorError
        If Ray is not installed.
    """

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError(_NO_RAY) from None
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise ValueError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
        self._ray = ray
        self.address = address
        self.num_cpus = num_cpus
        self._owned = False
        self._task = None

    def __enter__(self) -> RayExecutor:  # noqa: PYI034 (typing.Self needs Python 3.11)
        ray = self._ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "address": self.address,
                "include_dashboard": False,
                "logging_level": "WARNING",
                "log_to_driver": False,
            }
            if self.address is None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(**kwargs)
            except ConnectionError as err:
                raise ExecutorError(
                    f"cannot join the Ray cluster at {self.address}: {err}; "
                    "start one with `ray start --head` or omit --address"
                ) from None
            self._owned = True
        self._task = ray.remote(_call_in)
        return self

    def __exit__(self, *exc) -> None:
        if self._owned:
            self._ray.shutdown()
            self._owned = False

    def map_unordered(
        self,
        fn: Callable,
        items: Iterable,
        *,
        resources: Callable[[Any], Mapping[str, float]] | None = None,
        max_in_flight: int | None = None,
    ) -> Iterator:
        """Yield ``fn(item)`` for every item, in completion order.

        ``resources(item)`` gives each task's request (default one CPU). At most
        ``max_in_flight`` tasks are submitted at a time (default twice the cluster's CPUs), so the
        driver's memory stays bounded. If the consumer stops (an exception, Ctrl-C), tasks still
        running are cancelled: their workers get a KeyboardInterrupt, which stops a papermill
        child process too.
        """
        if self._task is None:
            raise RuntimeError("RayExecutor must be entered (`with RayExecutor() as ex:`) before use")
        ray = self._ray
        if max_in_flight is None:
            max_in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        fn_ref = ray.put(fn)  # shipped once, not once per task
        cwd = os.getcwd()
        pending: list = []
        it = iter(items)
        try:
            while True:
                for item in it:
                    request = dict(resources(item)) if resources else {}
                    request.setdefault("num_cpus", 1)
                    pending.append(self._task.options(**request).remote(cwd, fn_ref, item))
                    if len(pending) >= max_in_flight:
                        break
                if not pending:
                    return
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)


@contextlib.contextmanager
def open_executor(name: str = "local", *, address: str | None = None) -> Iterator[LocalExecutor | RayExecutor]:
    """The executor named on the command line, entered: a :class:`LocalExecutor` (default
    settings) for ``"local"``, a :class:`RayExecutor` for ``"ray"``.

    Both kinds are handed on as they are: :func:`mattlib.runner.run_grid` runs its ``jobs`` local
    threads for a :class:`LocalExecutor`, :mod:`mattlib.features` its worker processes.

    Raises
    ------
    ExecutorOptionError
        On an unknown name, or an ``address`` given to the local executor.
    ExecutorError
        If Ray is asked for but not installed.
    """
    if name not in EXECUTORS:
        raise ExecutorOptionError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    if name == "local":
        if address is not None:
            raise ExecutorOptionError("--address joins a Ray cluster: use it with --executor ray")
        with LocalExecutor() as executor:
            yield executor
        return
    with RayExecutor(address=address) as executor:
        yield executor
