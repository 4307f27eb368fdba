"""Run a params file's cells, stage by stage, ``jobs`` at a time, and sum up the run.

Cells run in parallel within a stage; a notebook that reads the whole run (declares ``run_dir``,
e.g. 06) is a stage of its own and waits for every cell before it. A finished cell is skipped
unless ``force``; a crashing cell keeps its failed attempt beside the last good result and the
others go on; the run ends with a :class:`RunSummary` naming the failures. One ``matt run`` per
run folder at a time (``<run>/.lock``).
"""

from __future__ import annotations

import collections
import functools
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from mattlib.evaluation.results import METRICS_FILE
from mattlib.executors import JOBS, LocalExecutor, RayExecutor
from mattlib.locks import folder_lock
from mattlib.runner.cells import cell_status, check_inputs
from mattlib.runner.execute import CellResult, run_cell
from mattlib.runner.spec import Cell, GridError, GridSpec, load_grid
from mattlib.runner.supervise import _PROCESSES

__all__ = ["RunSummary", "run_grid"]

_STALE_REASONS = {"parameters": "parameters changed", "notebook": "notebook edited", "code": "mattlib code changed"}


@dataclass
class RunSummary:
    run_dir: Path
    results: list[CellResult] = field(default_factory=list)
    stale: collections.Counter = field(default_factory=collections.Counter)  # reason -> cells
    interrupted: str = ""  # the signal that stopped the run ("SIGINT", "SIGTERM"), or ""

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def describe_stale(self) -> str:
        reasons = ", ".join(f"{_STALE_REASONS[k]}: {n}" for k, n in sorted(self.stale.items()))
        return f"{sum(self.stale.values())} cells stale ({reasons}); re-running them"

    def describe(self) -> str:
        counts = collections.Counter(r.status for r in self.results)
        lines = [
            f"run {self.run_dir}: {counts['done']} executed, {counts['skipped']} already finished "
            f"(skipped), {counts['failed']} failed"
        ]
        if self.stale:
            lines.append("  " + self.describe_stale().replace("re-running them", "re-run"))
        if self.interrupted:
            lines.append(
                f"  INTERRUPTED by {self.interrupted}: {counts['stopped']} stopped while running, "
                f"{counts['not started']} not started; run again to continue"
            )
        for r in self.failed:
            lines.append(f"  FAILED {r.cell.stem}/{r.cell.cell_id}: {r.error}")
            lines.append(f"         executed notebook: {r.attempt / 'notebook.ipynb'}")
            if (r.cell.output_dir / METRICS_FILE).exists():
                lines.append(f"         last good result kept: {r.cell.output_dir}")
        return "\n".join(lines)


def run_grid(
    params: str | Path | GridSpec,
    *,
    jobs: int = JOBS,
    force: bool = False,
    data_root: str | Path | None = None,
    progress: bool = True,
    timeout: float | None = None,
    executor: LocalExecutor | RayExecutor | None = None,
) -> RunSummary:
    """Execute every cell of a params file, stage by stage, ``jobs`` cells at a time.

    Cells already finished (same parameters, notebook source and mattlib code) are skipped unless
    ``force``; stale ones are counted and re-run. The inputs are checked once before any cell
    starts, and the run folder is locked (a second run on it fails with one line naming the
    holder). Failures do not stop the run; they are listed in the summary (``summary.ok`` is
    False). An interrupt (Ctrl-C, or SIGTERM through ``matt``) stops the running cells, starts no
    queued one, and returns the summary with ``interrupted`` set.

    ``executor=None`` or a :class:`mattlib.executors.LocalExecutor` runs the cells on this machine,
    ``jobs`` at a time (each in a GPU slot of its own); a :class:`mattlib.executors.RayExecutor` runs
    each as a Ray task with its notebook entry's ``resources`` (``jobs`` is then unused).
    """
    from tqdm.auto import tqdm

    if jobs < 1:
        raise GridError(f"jobs must be >= 1, got {jobs}")
    spec = params if isinstance(params, GridSpec) else load_grid(params, data_root=data_root)
    summary = RunSummary(run_dir=spec.run_dir)
    with folder_lock(spec.run_dir, what="run folder"):
        status = {id(c): cell_status(c, notebook_dir=spec.notebook_dir) for c in spec.cells}
        pending = [c for c in spec.cells if force or status[id(c)] != "finished"]
        check_inputs(pending)
        summary.stale = collections.Counter(s for s in status.values() if s not in ("finished", "new"))
        bar = tqdm(total=len(spec.cells), desc=f"grid {spec.run}", unit="cell", disable=not progress)
        if summary.stale and progress:
            bar.write(summary.describe_stale())
        try:
            _run_stages(spec, summary, bar, jobs=jobs, force=force, timeout=timeout, status=status, executor=executor)
        except KeyboardInterrupt as interrupt:
            summary.interrupted = getattr(interrupt, "signame", "SIGINT")
        finally:
            bar.close()
    return summary


def _run_stages(
    spec: GridSpec,
    summary: RunSummary,
    bar,
    *,
    jobs: int,
    force: bool,
    timeout: float | None,
    status: dict[int, str],
    executor: LocalExecutor | RayExecutor | None,
) -> None:
    ran_upstream = False  # an aggregating notebook (06) re-runs when a cell before it ran
    slots: queue.Queue[int] = queue.Queue()  # worker slots; slot k runs on GPU k % n_gpus
    for slot in range(jobs):
        slots.put(slot)
    run = functools.partial(run_cell, timeout=timeout, force=force, notebook_dir=spec.notebook_dir)
    _PROCESSES.stopping.clear()
    for i, stage in enumerate(spec.stages):
        todo = []
        for cell in stage:
            stale = ran_upstream and "run_dir" in cell.params
            if not force and not stale and status[id(cell)] == "finished":
                summary.results.append(CellResult(cell, "skipped"))
                bar.update()
            else:
                todo.append(cell)
        try:
            _run_stage(todo, summary, bar, run, slots, jobs=jobs, executor=executor)
        except KeyboardInterrupt:
            later = [c for stage in spec.stages[i + 1 :] for c in stage]
            summary.results.extend(CellResult(c, "not started") for c in later)
            raise
        ran_upstream = ran_upstream or bool(todo)


def _record(result: CellResult, summary: RunSummary, bar) -> None:
    summary.results.append(result)
    bar.set_postfix_str(f"{result.cell.stem}/{result.cell.cell_id} {result.status}")
    bar.update()
    for note in result.notes:
        bar.write(f"{result.cell.stem}/{result.cell.cell_id}: {note}")
    if result.status == "failed":
        bar.write(f"FAILED {result.cell.stem}/{result.cell.cell_id}: {result.error}")


def _run_stage(
    todo: list[Cell],
    summary: RunSummary,
    bar,
    run: Callable[..., CellResult],
    slots: queue.Queue[int],
    *,
    jobs: int,
    executor: LocalExecutor | RayExecutor | None,
) -> None:
    """The one place where cells are sent to ``run`` (threads here, or Ray tasks)."""
    if isinstance(executor, RayExecutor):
        _run_on_executor(todo, summary, bar, run, executor)
    else:
        _run_local(todo, summary, bar, run, slots, jobs=jobs)


def _run_on_executor(
    todo: list[Cell], summary: RunSummary, bar, run: Callable[..., CellResult], executor: RayExecutor
) -> None:
    """Each cell a task of ``executor``, with its notebook entry's resources."""
    done: set[int] = set()
    try:
        for result in executor.map_unordered(run, todo, resources=lambda cell: cell.resources):
            done.add(id(result.cell))
            _record(result, summary, bar)
    except BaseException:
        summary.results.extend(CellResult(c, "not started") for c in todo if id(c) not in done)
        raise


def _run_local(
    todo: list[Cell], summary: RunSummary, bar, run: Callable[..., CellResult], slots: queue.Queue[int], *, jobs: int
) -> None:
    """The cells on this machine: a pool of ``jobs`` threads, each cell in a free slot."""
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = {pool.submit(_run_in_slot, run, cell, slots, jobs=jobs): cell for cell in todo}
    recorded = set()
    try:
        for future in as_completed(futures):
            result = future.result()
            recorded.add(future)
            _record(result, summary, bar)
    except BaseException:  # an interrupt, or an error of the runner itself (e.g. a full disk)
        _PROCESSES.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        for future, cell in futures.items():
            if future in recorded:
                continue
            summary.results.append(CellResult(cell, "not started") if future.cancelled() else future.result())
        raise
    pool.shutdown()


def _run_in_slot(run: Callable[..., CellResult], cell: Cell, slots: queue.Queue[int], *, jobs: int) -> CellResult:
    slot = slots.get()  # a free slot: no two running cells share a GPU
    try:
        return run(cell, slot=slot, jobs=jobs)
    finally:
        slots.put(slot)
