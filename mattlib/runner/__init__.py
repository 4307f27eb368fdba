"""Stage 8, runner: the study's notebooks run by papermill over parameter grids from ``params/*.yaml``.

- :mod:`~mattlib.runner.spec`: a params file read and validated into a :class:`GridSpec` of cells
  (nothing runs);
- :mod:`~mattlib.runner.cells`: a cell's folder: finished or stale, its attempt folder, publishing
  a successful attempt, the inputs checked once before a run;
- :mod:`~mattlib.runner.execute`: one cell's papermill run in a fresh process
  (:mod:`~mattlib.runner.papermill_cell`) and its :class:`CellResult`;
- :mod:`~mattlib.runner.supervise`: the running processes, stopped with everything below them on
  an interrupt;
- :mod:`~mattlib.runner.schedule`: :func:`run_grid`, stage by stage, ``jobs`` cells at a time, and
  its :class:`RunSummary`.

Each grid cell runs in its own papermill process into ``outputs/<run>/.attempts/<notebook>/<cell-id>/``
(``notebook.ipynb``, ``params.yaml``, ``source.sha1``, ``code.sha1``, ``metrics.json``,
``papermill.log``), which replaces ``outputs/<run>/<notebook>/<cell-id>/`` only when it succeeded.
A successful notebook then carries its widgets' last views, shown without a kernel
(:mod:`mattlib.views.last_view`).
A cell whose ``metrics.json`` exists and that ran with the current parameters, notebook source and
mattlib code is finished and is skipped unless ``force``; a crashing cell keeps its failed attempt
beside the last good result and the others go on; the run ends with a summary naming the failures.
One ``matt run`` per run folder at a time (``<run>/.lock``).

The runner sits above ``views`` (it adds the widgets' last views to executed notebooks).
"""

from mattlib.runner.cells import attempt_dir, cell_status, check_inputs, is_finished
from mattlib.runner.execute import CellResult, run_cell
from mattlib.runner.schedule import RunSummary, run_grid
from mattlib.runner.spec import NOTEBOOK_DIR, Cell, GridError, GridSpec, load_grid, override_data_root

__all__ = [
    "NOTEBOOK_DIR",
    "GridError",
    "Cell",
    "GridSpec",
    "load_grid",
    "override_data_root",
    "cell_status",
    "is_finished",
    "attempt_dir",
    "check_inputs",
    "CellResult",
    "run_cell",
    "RunSummary",
    "run_grid",
]
