"""Run the study's notebooks with papermill over parameter grids from ``params/*.yaml``.

A params file::

    run: demo                       # results go to outputs/<run>/
    output_root: outputs            # optional
    defaults:                       # shared parameters, given to every notebook that declares them
      data_root: data/demo
      subset: medium
      cache_dir: outputs/cache/demo
      seed: 0
    notebooks:                      # cells run in parallel; a notebook that reads the whole run
                                    # (declares run_dir, e.g. 06) waits for all cells before it
      - notebook: 01_data_exploration.ipynb
      - notebook: 03_baselines.ipynb
        grid:                       # Cartesian product
          feature_set: [all, mfcc]
          model: [lr, svm]
        params:                     # fixed parameters of this notebook (override defaults)
          epochs: 5

Each grid cell runs in its own papermill process into ``outputs/<run>/.attempts/<notebook>/<cell-id>/``
(``notebook.ipynb``, ``params.yaml``, ``source.sha1``, ``code.sha1``, ``metrics.json``,
``papermill.log``), which replaces ``outputs/<run>/<notebook>/<cell-id>/`` only when it succeeded.
A successful notebook then carries its widgets' last views, shown without a kernel
(:mod:`mattlib.study.last_view`).
A cell whose ``metrics.json`` exists and that ran with the current parameters, notebook source and
mattlib code is finished and is skipped unless ``force``; a crashing cell keeps its failed attempt
beside the last good result and the others go on; the run ends with a summary naming the failures.
One ``matt run`` per run folder at a time (``<run>/.lock``).
"""

from __future__ import annotations

import collections
import difflib
import functools
import itertools
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mattlib import devices, paths
from mattlib.atomic import write_atomic
from mattlib.errors import MattError
from mattlib.evaluation.results import METRICS_FILE
from mattlib.executors import RayExecutor, validate_resources
from mattlib.locks import die_with_parent, folder_lock
from mattlib.provenance import code_digest
from mattlib.study.settings import SettingsError, check_setting

__all__ = [
    "NOTEBOOK_DIR",
    "GridError",
    "Cell",
    "GridSpec",
    "load_grid",
    "cell_status",
    "check_inputs",
    "run_grid",
    "RunSummary",
]

NOTEBOOK_DIR = paths.project_root() / "notebooks"
_TOP_KEYS = {"run", "output_root", "defaults", "notebooks", "description", "study"}
_ENTRY_KEYS = {"notebook", "grid", "params", "resources"}
_STUDY_KEYS = {"demo", "demo_options", "features"}  # read by mattlib.pipeline.run_study
# A run name is one folder under output_root: one path component of safe characters.
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Parameters the runner itself sets in every notebook that declares them.
_RUNNER_KEYS = {"output_dir", "run_dir"}
# Fixed parameters that name a cell (with the grid values).
_IDENTITY_KEYS = ("feature_set", "model", "pooling", "seed")


class GridError(MattError, ValueError):
    """A params file is invalid; the message is one line naming the valid choices."""


@dataclass(frozen=True)
class Cell:
    """One grid cell: a notebook and the parameters it runs with."""

    notebook: str
    cell_id: str
    params: dict[str, Any]
    output_dir: Path
    resources: dict[str, float] = field(default_factory=dict, compare=False)  # Ray's request

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


@dataclass
class GridSpec:
    """A validated params file: the run name and the cells, stage by stage (one per notebook)."""

    run: str
    run_dir: Path
    stages: list[list[Cell]]
    source: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # shared parameters, data root applied
    study: dict[str, Any] = field(default_factory=dict)  # what `matt study` prepares
    notebook_dir: Path = NOTEBOOK_DIR

    @property
    def cells(self) -> list[Cell]:
        return [c for stage in self.stages for c in stage]


@dataclass
class CellResult:
    cell: Cell
    status: str  # "done", "skipped", "failed", "stopped" (by an interrupt), "not started"
    seconds: float = 0.0
    error: str = ""
    attempt: Path | None = None  # where a failed or stopped attempt is kept
    notes: tuple[str, ...] = ()  # lines the console repeats (e.g. a resume point not taken)


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


def _slug(value: Any) -> str:
    text = str(value).replace("+", "_").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9_.=-]", "", text) or "x"


def _cell_id(grid_values: dict[str, Any]) -> str:
    if not grid_values:
        return "default"
    return "-".join(f"{_slug(v)}" for _, v in grid_values.items())


def _notebook_parameters(path: Path) -> dict[str, Any]:
    import papermill

    return {name: p["default"] for name, p in papermill.inspect_notebook(str(path)).items()}


def load_grid(
    path: str | Path,
    *,
    data_root: str | Path | None = None,
    output_root: str | Path | None = None,
    notebook_dir: str | Path = NOTEBOOK_DIR,
) -> GridSpec:
    """Read and validate a params file; nothing runs.

    Raises
    ------
    GridError
        On an unknown top-level key, notebook, parameter, feature set, model or pooling; the
        one-line message names the valid choices.
    """
    path = Path(path)
    spec = _read_spec(path)
    _check_keys(spec, _TOP_KEYS, f"{path}:")
    run = spec.get("run", path.stem)
    if not isinstance(run, (str, int)) or isinstance(run, bool) or not _RUN_NAME.fullmatch(str(run)):
        raise GridError(
            f"{path}: run must be one folder name of letters, digits, '.', '_' or '-' "
            f"(it becomes <output_root>/<run>), got {run!r}"
        )
    run = str(run)
    chosen_root = output_root if output_root is not None else spec.get("output_root", "outputs")
    if not isinstance(chosen_root, (str, os.PathLike)) or not str(chosen_root):
        raise GridError(f"{path}: output_root must be a folder path, got {chosen_root!r}")
    run_dir = Path(chosen_root) / run
    defaults = _mapping(spec.get("defaults"), "defaults", path, "{seed: 0}")
    study = _mapping(spec.get("study"), "study", path, "{demo: true}")
    _check_keys(study, _STUDY_KEYS, f"{path}: study:")
    if data_root is not None:
        defaults.update(override_data_root(defaults, data_root))
    notebook_dir = Path(notebook_dir)
    available = sorted(p.name for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    declared_anywhere = set().union(*(_notebook_parameters(notebook_dir / n) for n in available)) - _RUNNER_KEYS
    _check_keys(defaults, declared_anywhere, f"{path}: defaults:", what="parameter (of no notebook)")

    entries = spec.get("notebooks") or []
    if not isinstance(entries, list) or not entries:
        raise GridError(f"{path}: 'notebooks' must be a non-empty list of {{notebook, grid, params}}")
    stages: list[list[Cell]] = [[]]
    seen_ids: dict[str, set[str]] = {}
    for entry in entries:
        if isinstance(entry, str):
            entry = {"notebook": entry}
        if not isinstance(entry, dict) or "notebook" not in entry:
            raise GridError(f"{path}: each notebooks entry needs a 'notebook' key, got {entry!r}")
        bad = set(entry) - _ENTRY_KEYS
        if bad:
            raise GridError(
                f"{path}: unknown key(s) {sorted(bad)} in entry {entry['notebook']}; valid: {sorted(_ENTRY_KEYS)}"
            )
        name = str(entry["notebook"])
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        if name not in available:
            raise GridError(f"{path}: unknown notebook {name!r}; valid: {', '.join(available)}")
        declared = _notebook_parameters(notebook_dir / name)
        grid = _mapping(entry.get("grid"), f"grid of {name}", path, "{seed: [0, 1, 2]}")
        fixed = _mapping(entry.get("params"), f"params of {name}", path, "{model: mlp}")
        _check_keys({**grid, **fixed}, set(declared) - _RUNNER_KEYS, f"{path}: {name}:", what="parameter")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise GridError(f"{path}: grid value of {key!r} in {name} must be a non-empty list")
        base = {k: v for k, v in defaults.items() if k in declared}
        base.update(fixed)
        for key, value in [*base.items(), *((k, v) for k, vs in grid.items() for v in vs)]:
            try:
                check_setting(key, value)
            except SettingsError as err:
                raise GridError(f"{path}: {name}: {err}") from None
        # An aggregating notebook (one that reads the run folder) waits for everything before it.
        aggregator = "run_dir" in declared
        if aggregator and stages[-1]:
            stages.append([])
        try:
            resources = validate_resources(entry.get("resources"), where=f"{path}: {name}")
        except (TypeError, ValueError) as err:
            raise GridError(str(err)) from None
        identity = {k: fixed[k] for k in _IDENTITY_KEYS if k in fixed and k not in grid}
        keys = list(grid)
        ids = seen_ids.setdefault(name, set())
        for combo in itertools.product(*(grid[k] for k in keys)):
            grid_values = dict(zip(keys, combo))
            cell_id = _cell_id({**identity, **grid_values})
            if cell_id in ids:
                raise GridError(
                    f"{path}: {name}: two grid cells share the id {cell_id!r}; "
                    "give them a distinguishing feature_set, model, pooling or seed"
                )
            ids.add(cell_id)
            output_dir = run_dir / Path(name).stem / cell_id
            params = {**base, **grid_values, "output_dir": str(output_dir)}
            if aggregator:
                params["run_dir"] = str(run_dir)
            stages[-1].append(
                Cell(notebook=name, cell_id=cell_id, params=params, output_dir=output_dir, resources=resources)
            )
        if aggregator:
            stages.append([])
    stages = [stage for stage in stages if stage]
    return GridSpec(
        run=run,
        run_dir=run_dir,
        stages=stages,
        source=path,
        defaults=defaults,
        study=study,
        notebook_dir=notebook_dir,
    )


def _read_spec(path: Path) -> dict[str, Any]:
    """A params file's YAML mapping, or one line saying why it cannot be read."""
    if not path.exists():
        raise GridError(f"params file not found: {path}")
    if path.is_dir():
        raise GridError(f"{path} is a folder; give a params file (e.g. params/demo.yaml)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise GridError(
            f"{path}: line {line} is not UTF-8 (byte {raw[err.start]:#04x}); save the file as UTF-8"
        ) from None
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(spec, dict):
        raise GridError(f"{path}: expected a mapping with keys {sorted(_TOP_KEYS)}")
    return spec


def _mapping(value: Any, what: str, path: Path, example: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(
            f"{path}: {what} must be a mapping of name: value, e.g. {example}; got a {type(value).__name__}: {value!r}"
        )
    return dict(value)


def _check_keys(given: dict, valid: set[str], where: str, *, what: str = "key") -> None:
    """One line for the first key of ``given`` not in ``valid``, naming the nearest valid one."""
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise GridError(f"{where} unknown {what} {key!r}; {hint}valid: {', '.join(sorted(valid))}")


def _source_digest(notebook: Path) -> str:
    import hashlib

    return hashlib.sha1(Path(notebook).read_bytes()).hexdigest()


def attempt_dir(cell: Cell) -> Path:
    """Where a cell runs before its result replaces the last good one:
    ``<run>/.attempts/<notebook>/<cell-id>/`` (kept after a failure or a kill, so a re-run resumes
    its training checkpoint and the failure can be read)."""
    return cell.output_dir.parent.parent / ".attempts" / cell.output_dir.parent.name / cell.output_dir.name


def _identity(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that shape a cell's result: the runner's paths excluded, so a finished run
    folder that is moved or copied still counts as finished."""
    return {k: v for k, v in params.items() if k not in _RUNNER_KEYS}


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def cell_status(cell: Cell, *, notebook_dir: Path = NOTEBOOK_DIR) -> str:
    """``"finished"``, ``"new"`` (no result yet), or why the result is stale: ``"parameters"``,
    ``"notebook"`` (its source was edited) or ``"code"`` (the mattlib package changed)."""
    _recover(cell)
    folder = cell.output_dir
    if not (folder / METRICS_FILE).exists():
        return "new"
    try:
        saved = yaml.safe_load((folder / "params.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "parameters"
    if not isinstance(saved, dict) or _identity(saved) != _identity(cell.params):
        return "parameters"
    if _read_text(folder / "source.sha1") != _source_digest(Path(notebook_dir) / cell.notebook):
        return "notebook"
    if _read_text(folder / "code.sha1") != code_digest():
        return "code"
    return "finished"


def is_finished(cell: Cell, *, notebook_dir: Path = NOTEBOOK_DIR) -> bool:
    """A cell is finished when its metrics.json exists and it ran with the same parameters, the
    same notebook source and the same mattlib code."""
    return cell_status(cell, notebook_dir=notebook_dir) == "finished"


def _recover(cell: Cell) -> None:
    """Finish a swap that a kill interrupted (the last good result was set aside, not replaced)."""
    old = _set_aside(cell)
    if old.exists() and not cell.output_dir.exists():
        os.replace(old, cell.output_dir)


def _set_aside(cell: Cell) -> Path:
    return attempt_dir(cell).with_name(cell.output_dir.name + ".old")


def _publish(cell: Cell, attempt: Path) -> None:
    """Replace the cell's result by a successful attempt (two renames; the old one goes last)."""
    old = _set_aside(cell)
    shutil.rmtree(old, ignore_errors=True)
    cell.output_dir.parent.mkdir(parents=True, exist_ok=True)
    if cell.output_dir.exists():
        os.replace(cell.output_dir, old)
    os.replace(attempt, cell.output_dir)
    shutil.rmtree(old, ignore_errors=True)


def check_inputs(cells: list[Cell]) -> None:
    """Check, once, what the cells will read and write: each ``data_root`` holds readable, complete
    metadata (FMA's, or a collection's, whose counts are printed) with labelled tracks and a split
    that does not leak (unless a cell allows it); each ``cache_dir`` and output folder can be written.

    Raises
    ------
    GridError
        One line naming the path and what to do.
    """
    from mattlib.data import bags, datasets, fma

    roots = {
        (c.params["data_root"], c.params.get("dataset", "auto"), c.params.get("subset", "medium"))
        for c in cells
        if "data_root" in c.params
    }
    allowed = {c.params["data_root"] for c in cells if c.params.get("allow_leakage")}
    for root, kind, subset in sorted(roots):
        try:
            if not Path(root).is_dir() or (datasets.detect_dataset(root) if kind == "auto" else kind) == "fma":
                fma.check_metadata(root)  # names a missing file before it is parsed
            source = datasets.open_dataset(root, kind=kind)
            membership = bags.make_bags(source.tracks(subset=subset))
        except fma.FMADataError as err:
            raise GridError(f"data_root {root}: {err}") from None
        if membership.empty:
            raise GridError(
                f"data_root {root}: no labelled tracks in subset {subset!r} (a track needs a top genre and a "
                "split); check its genre column (genre_top for FMA)"
            )
        if isinstance(source, datasets.CollectionDataset):  # no record to check it against: say what was read
            print(
                f"collection {root}: {len(membership)} labelled tracks, {membership['bag_id'].nunique()} bags, "
                f"{membership['genre'].nunique()} genres"
            )
        if root not in allowed:
            try:
                bags.assert_no_leakage(membership, where=f"data_root {root}")
            except bags.LeakageError as err:
                raise GridError(str(err)) from None
    writable = {c.params["cache_dir"] for c in cells if "cache_dir" in c.params}
    writable |= {str(c.output_dir.parent.parent) for c in cells}
    for folder in sorted(writable):
        _check_writable(Path(folder))


def _check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GridError(f"{folder}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GridError(f"{folder}: no permission to write in {existing}; choose a writable path")


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


@functools.lru_cache(maxsize=1)
class _Processes:
    """The papermill processes running now, so an interrupt can stop them (and their kernels)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self.stopping.is_set():
                raise _NotStarted
            # preexec_fn only calls prctl (libc loaded beforehand): safe after fork in a threaded parent
            proc = subprocess.Popen(
                command,
                start_new_session=True,  # noqa: PLW1509
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
                **kwargs,
            )
            self._running.add(proc)
            return proc

    def finish(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop_all(self) -> None:
        """No new process starts; the running ones and their descendants are terminated."""
        with self._lock:
            self.stopping.set()
            running = list(self._running)
        for proc in running:
            _terminate_tree(proc.pid)


class _NotStarted(Exception):
    """The run is stopping: a cell's process was not started."""


_PROCESSES = _Processes()


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; a kernel runs in a session of its own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _terminate_tree(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM ``pid`` and its descendants, SIGKILL what is still alive after ``grace`` seconds."""
    import signal

    victims = [pid, *_descendants(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for victim in victims:
            try:
                os.kill(victim, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(v) for v in victims):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def run_cell(
    cell: Cell,
    *,
    slot: int = 0,
    jobs: int = 1,
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
        "mattlib.study.papermill_cell",  # papermill, stopping the kernel at once when it is done
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
    """Add its widgets' last views to an executed notebook (:mod:`mattlib.study.last_view`), so
    that it shows them without a kernel. Only that is lost if it fails: logged, not raised."""
    import nbformat

    from mattlib.study import last_view

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


def _run_in_slot(
    cell: Cell, slots: queue.Queue[int], *, jobs: int, timeout: float | None, force: bool, notebook_dir: Path
) -> CellResult:
    slot = slots.get()  # a free slot: no two running cells share a GPU
    try:
        return run_cell(cell, slot=slot, jobs=jobs, timeout=timeout, force=force, notebook_dir=notebook_dir)
    finally:
        slots.put(slot)


def run_grid(
    params: str | Path | GridSpec,
    *,
    jobs: int = 1,
    force: bool = False,
    data_root: str | Path | None = None,
    progress: bool = True,
    timeout: float | None = None,
    executor: RayExecutor | None = None,
) -> RunSummary:
    """Execute every cell of a params file, stage by stage, ``jobs`` cells at a time.

    Cells already finished (same parameters, notebook source and mattlib code) are skipped unless
    ``force``; stale ones are counted and re-run. The inputs are checked once before any cell
    starts, and the run folder is locked (a second run on it fails with one line naming the
    holder). Failures do not stop the run; they are listed in the summary (``summary.ok`` is
    False). An interrupt (Ctrl-C, or SIGTERM through ``matt``) stops the running cells, starts no
    queued one, and returns the summary with ``interrupted`` set.

    ``executor=None`` runs the cells on this machine; a :class:`mattlib.executors.RayExecutor`
    runs each as a Ray task with its notebook entry's ``resources`` (``jobs`` is then unused).
    """
    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
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
    executor: RayExecutor | None,
) -> None:
    ran_upstream = False  # an aggregating notebook (06) re-runs when a cell before it ran
    slots: queue.Queue[int] = queue.Queue()  # worker slots; slot k runs on GPU k % n_gpus
    for slot in range(jobs):
        slots.put(slot)
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
            _run_stage(
                todo,
                summary,
                bar,
                slots,
                jobs=jobs,
                force=force,
                timeout=timeout,
                notebook_dir=spec.notebook_dir,
                executor=executor,
            )
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
    slots: queue.Queue[int],
    *,
    jobs: int,
    force: bool,
    timeout: float | None,
    notebook_dir: Path,
    executor: RayExecutor | None = None,
) -> None:
    """The one place where cells are sent to run (threads here, or Ray tasks)."""
    if executor is not None:
        run = functools.partial(run_cell, timeout=timeout, force=force, notebook_dir=notebook_dir)
        done: set[int] = set()
        try:
            for result in executor.map_unordered(run, todo, resources=lambda cell: cell.resources):
                done.add(id(result.cell))
                _record(result, summary, bar)
        except BaseException:
            summary.results.extend(CellResult(c, "not started") for c in todo if id(c) not in done)
            raise
        return
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = {
        pool.submit(_run_in_slot, cell, slots, jobs=jobs, timeout=timeout, force=force, notebook_dir=notebook_dir): cell
        for cell in todo
    }
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


def override_data_root(defaults: dict[str, Any], data_root: str | Path) -> dict[str, Any]:
    """``data_root`` and a ``cache_dir`` of its own, so features of another root are never reused."""
    import hashlib

    resolved = str(Path(data_root).expanduser().resolve())
    if resolved == str(Path(defaults.get("data_root", "")).expanduser().resolve()):
        return {"data_root": str(data_root)}
    tag = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    cache = Path(defaults.get("cache_dir", "outputs/cache/default"))
    return {"data_root": str(data_root), "cache_dir": str(cache.parent / f"{Path(resolved).name}-{tag}")}
