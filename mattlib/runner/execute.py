"""One grid cell's run: papermill in a fresh process, in the cell's attempt folder, and its outcome.

The process is ``python -m mattlib.runner.papermill_cell``; it runs with a thread budget and a GPU
of its own (:func:`_cell_env`), under a per-cell and a wall-clock time limit. A successful notebook
then carries its widgets' last views, shown without a kernel (:mod:`mattlib.views.last_view`), and
replaces the cell's last good result; a failed one is kept in its attempt folder with the error read
from its log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from mattlib import devices
from mattlib.atomic import write_atomic
from mattlib.evaluation.results import METRICS_FILE
from mattlib.executors import JOBS
from mattlib.provenance import code_digest
from mattlib.runner.cells import _identity, _publish, _source_digest, attempt_dir
from mattlib.runner.spec import NOTEBOOK_DIR, Cell
from mattlib.runner.supervise import _PROCESSES, _NotStarted, _terminate_tree

__all__ = ["CellResult", "run_cell"]


@dataclass
class CellResult:
    cell: Cell
    status: str  # "done", "skipped", "failed", "stopped" (by an interrupt), "not started"
    seconds: float = 0.0
    error: str = ""
    attempt: Path | None = None  # where a failed or stopped attempt is kept
    notes: tuple[str, ...] = ()  # lines the console repeats (e.g. a resume point not taken)


def _cell_env(slot: int, jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.setdefault(var, str(threads))
    # figures as plotly JSON (drawn by JupyterLab's plotly extension and by the report), not as
    # HTML that inlines 4.8 MB of plotly.js into every executed notebook (seconds per cell)
    env.setdefault("PLOTLY_RENDERER", "plotly_mimetype")
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env["PYTHONWARNINGS"] = env.get("PYTHONWARNINGS", "ignore::DeprecationWarning")
    n_gpus = devices.gpu_count()
    if n_gpus > 0 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpus)  # each worker its own GPU
    return env


def run_cell(
    cell: Cell,
    *,
    slot: int = 0,
    jobs: int = JOBS,
    notebook_dir: Path = NOTEBOOK_DIR,
    timeout: float | None = None,
    force: bool = False,
) -> CellResult:
    """Execute one cell with papermill in a fresh process; never raises on notebook errors.

    The cell runs in :func:`attempt_dir`; only a successful run replaces the cell's folder, so a
    failing re-run never destroys the last good result. ``force`` starts the attempt afresh (no
    training resume point). ``timeout`` (seconds) bounds each notebook cell's execution
    (papermill's ``--execution-timeout``), so a hanging cell fails instead of stalling the grid.
    """
    attempt = attempt_dir(cell)
    if _PROCESSES.stopping.is_set():  # an interrupt came first: no folder for a cell that never starts
        return CellResult(cell, "not started")
    if force:
        shutil.rmtree(attempt, ignore_errors=True)
    fresh = not attempt.exists()
    attempt.mkdir(parents=True, exist_ok=True)
    (attempt / METRICS_FILE).unlink(missing_ok=True)
    params_file = attempt / "params.yaml"
    params_file.write_text(yaml.safe_dump(_identity(cell.params), sort_keys=True))
    (attempt / "source.sha1").write_text(_source_digest(Path(notebook_dir) / cell.notebook) + "\n")
    (attempt / "code.sha1").write_text(code_digest() + "\n")
    runner = {"output_dir": str(attempt), **({"run_dir": cell.params["run_dir"]} if "run_dir" in cell.params else {})}
    command = [
        sys.executable,
        "-m",
        "mattlib.runner.papermill_cell",  # papermill, stopping the kernel at once when it is done
        str(Path(notebook_dir) / cell.notebook),
        str(attempt / "notebook.ipynb"),
        "--parameters-file",
        str(params_file),
        "--runner",
        json.dumps(runner),
        "--cwd",
        os.getcwd(),
    ]
    if timeout:
        command += ["--execution-timeout", str(int(timeout))]
    start = time.perf_counter()
    log = attempt / "papermill.log"
    # papermill's limit is per notebook cell; the whole run also gets a wall-clock limit, in case
    # the client itself stalls (the kernel idle, nbclient still waiting)
    wall = timeout * (_code_cells(Path(notebook_dir) / cell.notebook) + 1) if timeout else None
    with log.open("w") as handle:
        try:
            proc = _PROCESSES.start(command, stdout=handle, stderr=subprocess.STDOUT, env=_cell_env(slot, jobs))
        except _NotStarted:
            if fresh:
                shutil.rmtree(attempt, ignore_errors=True)
            return CellResult(cell, "not started")
        try:
            code = proc.wait(timeout=wall)
        except subprocess.TimeoutExpired:
            _terminate_tree(proc.pid)
            code = None
        finally:
            _PROCESSES.finish(proc)
    seconds = time.perf_counter() - start
    if _PROCESSES.stopping.is_set() and code != 0:
        return CellResult(cell, "stopped", seconds, "stopped by an interrupt", attempt=attempt)
    notes = _console_notes(attempt / "notebook.ipynb")
    if code == 0 and (attempt / METRICS_FILE).exists():
        _carry_last_views(attempt / "notebook.ipynb", log)
        _publish(cell, attempt)
        return CellResult(cell, "done", seconds, notes=notes)
    if code is None:
        error = f"the notebook ran past its time limit ({wall:.0f} s) and was stopped"
    elif code == 0:
        error = f"notebook finished but wrote no {METRICS_FILE}"
    elif code < 0:
        error = f"papermill was killed by signal {-code}"
    else:
        error = _last_error(log) or f"papermill exited with status {code}"
    return CellResult(cell, "failed", seconds, error, attempt=attempt, notes=notes)


#: Lines of an executed notebook's output that ``matt run`` repeats on its console.
_CONSOLE_NOTES = ("training from scratch",)


def _console_notes(notebook: Path) -> tuple[str, ...]:
    """The lines of ``notebook``'s stream outputs that name one of :data:`_CONSOLE_NOTES`."""
    try:
        cells = json.loads(notebook.read_text()).get("cells", [])
    except (OSError, ValueError):
        return ()
    text = (o.get("text", "") for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream")
    lines = (
        line.strip() for chunk in text for line in ("".join(chunk) if isinstance(chunk, list) else chunk).splitlines()
    )
    return tuple(dict.fromkeys(line for line in lines if any(n in line for n in _CONSOLE_NOTES)))


def _carry_last_views(notebook: Path, log: Path) -> None:
    """Add its widgets' last views to an executed notebook (:mod:`mattlib.views.last_view`), so
    that it shows them without a kernel. Only that is lost if it fails: logged, not raised."""
    import nbformat

    from mattlib.views import last_view

    try:
        nb = nbformat.read(notebook, as_version=4)
        if last_view.carry_last_views(nb):
            write_atomic(notebook, lambda tmp: nbformat.write(nb, tmp))
    except Exception as err:
        with log.open("a") as handle:
            handle.write(f"WARNING | {notebook.name}: widget last views not added: {err!r}\n")


def _code_cells(notebook: Path) -> int:
    import nbformat

    return sum(c.cell_type == "code" for c in nbformat.read(notebook, as_version=4).cells)


def _last_error(log: Path) -> str:
    lines = [
        line.strip()
        for line in log.read_text(errors="replace").splitlines()
        if line.strip() and "WARNING |" not in line
    ]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line) or "Error:" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""
