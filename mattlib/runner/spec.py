"""Read a params file (``params/*.yaml``) into a :class:`GridSpec`: the run and its cells.

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

Nothing runs here: an unknown key, notebook, parameter or setting fails with one line naming the
valid choices. A cell's folder and status are :mod:`mattlib.runner.cells`'; running the cells is
:mod:`mattlib.runner.schedule`'s.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mattlib import paths
from mattlib.errors import MattError
from mattlib.executors import validate_resources
from mattlib.study.settings import SettingsError, check_setting

__all__ = ["NOTEBOOK_DIR", "GridError", "Cell", "GridSpec", "load_grid", "override_data_root"]

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


def override_data_root(defaults: dict[str, Any], data_root: str | Path) -> dict[str, Any]:
    """``data_root`` and a ``cache_dir`` of its own, so features of another root are never reused."""
    import hashlib

    resolved = str(Path(data_root).expanduser().resolve())
    if resolved == str(Path(defaults.get("data_root", "")).expanduser().resolve()):
        return {"data_root": str(data_root)}
    tag = hashlib.sha1(resolved.encode()).hexdigest()[:8]
    cache = Path(defaults.get("cache_dir", "outputs/cache/default"))
    return {"data_root": str(data_root), "cache_dir": str(cache.parent / f"{Path(resolved).name}-{tag}")}
