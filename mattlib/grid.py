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

Each grid cell runs in its own papermill process into ``outputs/<run>/<notebook>/<cell-id>/``
(``notebook.ipynb``, ``params.yaml``, ``source.sha1``, ``metrics.json``, ``papermill.log``). A cell
whose ``metrics.json`` exists and that ran with the current parameters and notebook source is
finished and is skipped unless ``force``; a crashing cell keeps its executed notebook with the error and the others
go on; the run ends with a summary naming the failures.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mattlib.executors import RayExecutor, validate_resources
from mattlib.results import METRICS_FILE

__all__ = [
    "NOTEBOOK_DIR",
    "GridError",
    "Cell",
    "GridSpec",
    "load_grid",
    "run_grid",
    "run_study",
    "RunSummary",
]

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
_TOP_KEYS = {"run", "output_root", "defaults", "notebooks", "description", "study"}
_ENTRY_KEYS = {"notebook", "grid", "params", "resources"}
# Parameters the runner itself sets in every notebook that declares them.
_RUNNER_KEYS = {"output_dir", "run_dir"}
# Fixed parameters that name a cell (with the grid values).
_IDENTITY_KEYS = ("feature_set", "model", "pooling", "seed")


class GridError(ValueError):
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

    @property
    def cells(self) -> list[Cell]:
        return [c for stage in self.stages for c in stage]


@dataclass
class CellResult:
    cell: Cell
    status: str  # "done", "skipped", "failed"
    seconds: float = 0.0
    error: str = ""


@dataclass
class RunSummary:
    run_dir: Path
    results: list[CellResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("done", "skipped", "failed")}
        lines = [
            f"run {self.run_dir}: {counts['done']} executed, {counts['skipped']} already finished "
            f"(skipped), {counts['failed']} failed"
        ]
        for r in self.failed:
            lines.append(f"  FAILED {r.cell.stem}/{r.cell.cell_id}: {r.error}")
            lines.append(f"         executed notebook: {r.cell.output_dir / 'notebook.ipynb'}")
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


def _valid_values() -> dict[str, list[str]]:
    """Choices for the parameters whose values the runner validates before anything runs."""
    from mattlib import choices

    return {
        "feature_set": list(choices.FEATURE_SETS),
        "model": list(choices.MODELS),
        "pooling": list(choices.POOLINGS),
        "subset": ["small", "medium", "large"],
        "device": ["auto", "cpu", "cuda"],
    }


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
    if not path.exists():
        raise GridError(f"params file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(spec, dict):
        raise GridError(f"{path}: expected a mapping with keys {sorted(_TOP_KEYS)}")
    unknown = set(spec) - _TOP_KEYS
    if unknown:
        raise GridError(f"{path}: unknown key(s) {sorted(unknown)}; valid: {sorted(_TOP_KEYS)}")
    run = str(spec.get("run") or path.stem)
    root = Path(output_root or spec.get("output_root") or "outputs")
    run_dir = root / run
    defaults = dict(spec.get("defaults") or {})
    if data_root is not None:
        defaults.update(override_data_root(defaults, data_root))
    notebook_dir = Path(notebook_dir)
    available = sorted(p.name for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    valid_values = _valid_values()

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
            raise GridError(f"{path}: unknown key(s) {sorted(bad)} in entry {entry['notebook']}; valid: {sorted(_ENTRY_KEYS)}")
        name = str(entry["notebook"])
        if not name.endswith(".ipynb"):
            name += ".ipynb"
        if name not in available:
            raise GridError(f"{path}: unknown notebook {name!r}; valid: {', '.join(available)}")
        declared = _notebook_parameters(notebook_dir / name)
        grid = dict(entry.get("grid") or {})
        fixed = dict(entry.get("params") or {})
        for key in list(grid) + list(fixed):
            if key not in declared or key in _RUNNER_KEYS:
                valid = sorted(set(declared) - _RUNNER_KEYS)
                raise GridError(f"{path}: {name} has no parameter {key!r}; valid: {', '.join(valid)}")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise GridError(f"{path}: grid value of {key!r} in {name} must be a non-empty list")
        base = {k: v for k, v in defaults.items() if k in declared}
        base.update(fixed)
        for key, value in [*base.items(), *((k, v) for k, vs in grid.items() for v in vs)]:
            if key in valid_values and value not in valid_values[key]:
                raise GridError(
                    f"{path}: {name}: unknown {key} {value!r}; valid: {', '.join(map(str, valid_values[key]))}"
                )
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
                raise GridError(f"{path}: {name}: two grid cells share the id {cell_id!r}; "
                                "give them a distinguishing feature_set, model, pooling or seed")
            ids.add(cell_id)
            output_dir = run_dir / Path(name).stem / cell_id
            params = {**base, **grid_values, "output_dir": str(output_dir)}
            if aggregator:
                params["run_dir"] = str(run_dir)
            stages[-1].append(Cell(notebook=name, cell_id=cell_id, params=params, output_dir=output_dir,
                                   resources=resources))
        if aggregator:
            stages.append([])
    stages = [stage for stage in stages if stage]
    return GridSpec(run=run, run_dir=run_dir, stages=stages, source=path, defaults=defaults,
                    study=dict(spec.get("study") or {}))


def _source_digest(notebook: Path) -> str:
    import hashlib

    return hashlib.sha1(Path(notebook).read_bytes()).hexdigest()


def is_finished(cell: Cell, *, notebook_dir: Path = NOTEBOOK_DIR) -> bool:
    """A cell is finished when its metrics.json exists and it ran with the same parameters and
    the same notebook source (editing a notebook re-runs its cells)."""
    params_file = cell.output_dir / "params.yaml"
    source_file = cell.output_dir / "source.sha1"
    if not all(p.exists() for p in (cell.output_dir / METRICS_FILE, params_file, source_file)):
        return False
    if source_file.read_text().strip() != _source_digest(Path(notebook_dir) / cell.notebook):
        return False
    try:
        return yaml.safe_load(params_file.read_text()) == cell.params
    except yaml.YAMLError:
        return False


def _cell_env(slot: int, jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.setdefault(var, str(threads))
    env.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook")
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    env["PYTHONWARNINGS"] = env.get("PYTHONWARNINGS", "ignore::DeprecationWarning")
    n_gpus = _gpu_count()
    if n_gpus > 0 and "CUDA_VISIBLE_DEVICES" not in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % n_gpus)  # each worker its own GPU
    return env


@functools.lru_cache(maxsize=1)
def _gpu_count() -> int:
    """CUDA GPUs visible to ``nvidia-smi`` (0 without a driver); asked once per process."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def run_cell(cell: Cell, *, slot: int = 0, jobs: int = 1, notebook_dir: Path = NOTEBOOK_DIR,
             timeout: float | None = None) -> CellResult:
    """Execute one cell with papermill in a fresh process; never raises on notebook errors.

    ``timeout`` (seconds) bounds each notebook cell's execution (papermill's
    ``--execution-timeout``), so a hanging cell fails instead of stalling the grid.
    """
    cell.output_dir.mkdir(parents=True, exist_ok=True)
    params_file = cell.output_dir / "params.yaml"
    (cell.output_dir / METRICS_FILE).unlink(missing_ok=True)  # a re-run never keeps stale metrics
    params_file.write_text(yaml.safe_dump(cell.params, sort_keys=True))
    (cell.output_dir / "source.sha1").write_text(_source_digest(Path(notebook_dir) / cell.notebook) + "\n")
    command = [
        sys.executable, "-m", "papermill",
        str(Path(notebook_dir) / cell.notebook), str(cell.output_dir / "notebook.ipynb"),
        "-f", str(params_file), "-k", "python3", "--cwd", os.getcwd(), "--no-progress-bar",
        "--log-level", "WARNING",
    ]
    if timeout:
        command += ["--execution-timeout", str(int(timeout))]
    start = time.perf_counter()
    log = cell.output_dir / "papermill.log"
    # papermill's limit is per notebook cell; the whole run also gets a wall-clock limit, in case
    # the client itself stalls (the kernel idle, nbclient still waiting)
    wall = timeout * (_code_cells(Path(notebook_dir) / cell.notebook) + 1) if timeout else None
    with log.open("w") as handle:
        try:
            proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                                  env=_cell_env(slot, jobs), timeout=wall)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.perf_counter() - start
    if code == 0 and (cell.output_dir / METRICS_FILE).exists():
        return CellResult(cell, "done", seconds)
    if code is None:
        error = f"the notebook ran past its time limit ({wall:.0f} s) and was stopped"
    elif code == 0:
        error = f"notebook finished but wrote no {METRICS_FILE}"
    elif code < 0:
        error = f"papermill was killed by signal {-code}"
    else:
        error = _last_error(log) or f"papermill exited with status {code}"
    return CellResult(cell, "failed", seconds, error)


def _code_cells(notebook: Path) -> int:
    import nbformat

    return sum(c.cell_type == "code" for c in nbformat.read(notebook, as_version=4).cells)


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines()
             if line.strip() and "WARNING |" not in line]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line) or "Error:" in line:
            return line[:300]
    return lines[-1][:300] if lines else ""


def _run_in_slot(cell: Cell, slots: "queue.Queue[int]", *, jobs: int, timeout: float | None) -> CellResult:
    slot = slots.get()  # a free slot: no two running cells share a GPU
    try:
        return run_cell(cell, slot=slot, jobs=jobs, timeout=timeout)
    finally:
        slots.put(slot)


def _dispatch(cells: list[Cell], slots: "queue.Queue[int]", *, jobs: int, timeout: float | None,
              executor: RayExecutor | None):
    """The one place where cells are sent to run: yields their results in completion order."""
    if executor is not None:
        yield from executor.map_unordered(functools.partial(run_cell, timeout=timeout), cells,
                                          resources=lambda cell: cell.resources)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_run_in_slot, cell, slots, jobs=jobs, timeout=timeout) for cell in cells]
        for future in as_completed(futures):
            yield future.result()


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

    ``executor=None`` runs the cells on this machine; a :class:`mattlib.executors.RayExecutor`
    runs each as a Ray task with its notebook entry's ``resources`` (``jobs`` is then unused).

    Cells already finished are skipped unless ``force``. Failures do not stop the run; they are
    listed in the summary (``summary.ok`` is False).
    """
    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    spec = params if isinstance(params, GridSpec) else load_grid(params, data_root=data_root)
    summary = RunSummary(run_dir=spec.run_dir)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(spec.cells), desc=f"grid {spec.run}", unit="cell", disable=not progress)
    ran_upstream = False  # an aggregating notebook (06) re-runs when a cell before it ran
    slots: queue.Queue[int] = queue.Queue()  # worker slots; slot k runs on GPU k % n_gpus
    for slot in range(jobs):
        slots.put(slot)
    for stage in spec.stages:
        todo = []
        for cell in stage:
            stale = ran_upstream and "run_dir" in cell.params
            if not force and not stale and is_finished(cell):
                summary.results.append(CellResult(cell, "skipped"))
                bar.update()
            else:
                todo.append(cell)
        for result in _dispatch(todo, slots, jobs=jobs, timeout=timeout, executor=executor):
            summary.results.append(result)
            bar.set_postfix_str(f"{result.cell.stem}/{result.cell.cell_id} {result.status}")
            bar.update()
            if result.status == "failed":
                bar.write(f"FAILED {result.cell.stem}/{result.cell.cell_id}: {result.error}")
        ran_upstream = ran_upstream or bool(todo)
    bar.close()
    return summary


def run_study(
    *,
    params: str | Path = "params/demo.yaml",
    data_root: str | Path | None = None,
    jobs: int = 2,
    force: bool = False,
    cell_timeout: float | None = None,
) -> tuple[Path, bool]:
    """The whole study: demo data if absent, features, the grid, the report.

    Returns the path of the report's ``index.html`` and whether every cell succeeded.
    """
    from mattlib import demo, features, report

    spec = load_grid(params, data_root=data_root)
    defaults, study = spec.defaults, spec.study
    root = Path(defaults.get("data_root", "data/demo"))
    if not (root / "fma_metadata" / "tracks.csv").exists():
        if study.get("demo") and data_root is None:
            print(f"building the demo dataset in {root} ...")
            demo.generate_demo(root, **dict(study.get("demo_options") or {}))
        else:
            raise FileNotFoundError(
                f"no FMA metadata under {root}: expected {root / 'fma_metadata' / 'tracks.csv'} "
                "(unpack fma_metadata.zip and fma_<subset>.zip there)"
            )
    cache = Path(defaults.get("cache_dir", "outputs/cache/default"))
    subset = defaults.get("subset", "medium")
    for kind in study.get("features", ["fma518", "mel"]):
        if kind == "fma518" and (root / "fma_metadata" / "features.csv").exists():
            print("features: fma518 -> FMA's own fma_metadata/features.csv (nothing to extract)")
            continue
        mel = features.MelSettings(**mel_settings_kwargs(defaults)) if kind == "mel" else None
        print(f"features: {kind} -> {cache}")
        extraction = features.extract_subset(root, subset=subset, kind=kind, out=cache, jobs=jobs, settings=mel)
        print(f"  {extraction}")
    summary = run_grid(spec, jobs=jobs, force=force, timeout=cell_timeout)
    print(summary.describe())
    index = report.build_report(spec.run_dir)
    return index, summary.ok


def override_data_root(defaults: dict[str, Any], data_root: str | Path) -> dict[str, Any]:
    """``data_root`` and a ``cache_dir`` of its own, so features of another root are never reused."""
    import hashlib

    resolved = str(Path(data_root).expanduser().resolve())
    if resolved == str(Path(defaults.get("data_root", "")).expanduser().resolve()):
        return {"data_root": str(data_root)}
    tag = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    cache = Path(defaults.get("cache_dir", "outputs/cache/default"))
    return {"data_root": str(data_root), "cache_dir": str(cache.parent / f"{Path(resolved).name}-{tag}")}


#: Shared notebook parameters that set the log-mel (-> mattlib.features.MelSettings fields).
MEL_PARAMETERS = {
    "mel_sr": "sr",
    "mel_seconds": "seconds",
    "mel_n_mels": "n_mels",
    "mel_hop_length": "hop_length",
    "mel_n_fft": "n_fft",
}


def mel_settings_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """MelSettings keyword arguments from the shared ``mel_*`` notebook parameters."""
    return {field_: params[key] for key, field_ in MEL_PARAMETERS.items() if key in params}
