"""Writing a notebook's results: ``metrics.json`` and tables, atomically.

Every notebook ends by calling :func:`write_metrics`; :mod:`mattlib.views.report` and
:mod:`mattlib.runner` read the files back. A file is written to a temporary name and renamed, so a
crash never leaves a half-written ``metrics.json`` that looks finished.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mattlib import atomic

__all__ = ["to_jsonable", "write_json", "write_metrics", "METRICS_FILE", "TEST_SCORES_FILE"]

METRICS_FILE = "metrics.json"
#: Per-track test scores of every reported model of a cell (the report's intervals and paired tests).
TEST_SCORES_FILE = "test_scores.csv"


def to_jsonable(value: Any) -> Any:
    """Convert numpy / pandas values (recursively) to plain JSON types; NaN becomes ``None``."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, pd.Series):
        return to_jsonable(value.to_dict())
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.reset_index().to_dict(orient="records"))
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary file + rename)."""
    return atomic.write_json(path, to_jsonable(data))


def write_metrics(output_dir: str | Path, metrics: dict) -> Path:
    """Write ``<output_dir>/metrics.json`` (the file the grid runner and the report read)."""
    return write_json(Path(output_dir) / METRICS_FILE, metrics)
