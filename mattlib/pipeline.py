"""The whole study in one call (``matt study``): demo data if absent, features, the papermill
grid, the report. It orchestrates every stage, so it sits above them (like the CLI)."""

from __future__ import annotations

import time
from pathlib import Path

from mattlib import features, paths, runner
from mattlib.data import datasets, demo
from mattlib.executors import JOBS
from mattlib.study.settings import Settings
from mattlib.views import report

__all__ = ["run_study"]


def run_study(
    *,
    params: str | Path = "params/demo.yaml",
    data_root: str | Path | None = None,
    jobs: int = JOBS,
    force: bool = False,
    cell_timeout: float | None = None,
) -> tuple[Path, bool]:
    """The whole study: demo data if absent, features, the grid, the report.

    Returns the path of the report's ``index.html`` and whether every cell succeeded.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}  # stage -> seconds, printed at the end

    def lap(stage: str) -> None:
        timings[stage] = time.perf_counter() - start - sum(timings.values())

    spec = runner.load_grid(params, data_root=data_root)
    settings, study = Settings.from_parameters(spec.defaults), spec.study
    root, cache = paths.resolve(settings.data_root), paths.resolve(settings.cache_dir)
    if not any(kind.looks_like(root) for kind in datasets.DATASETS.values()):
        if not (study.get("demo") and data_root is None):
            datasets.detect_dataset(root)  # raises: names the path and what belongs there
        print(f"building the demo dataset in {root} ...")
        demo.generate_demo(root, **{"jobs": jobs, **dict(study.get("demo_options") or {})})
        lap("demo data")
    dataset = datasets.open_dataset(root, dataset=settings.dataset)
    for kind in study.get("features", ["fma518", "mel"]):
        official = dataset.official_features_path()
        if kind == "fma518" and official is not None:
            print(f"features: fma518 -> {official} (the dataset's own; nothing to extract)")
            continue
        kind_settings = {"mel": settings.mel, "musicnn": settings.musicnn}.get(kind)
        print(f"features: {kind} -> {cache}")
        extraction = features.extract(
            dataset.audio_paths(subset=settings.subset), kind=kind, out=cache, jobs=jobs, settings=kind_settings
        )
        print(f"  {extraction}")
        lap(kind)
    summary = runner.run_grid(spec, jobs=jobs, force=force, timeout=cell_timeout)
    lap("grid")
    print(summary.describe())
    if summary.interrupted:
        interrupt = KeyboardInterrupt(summary.interrupted)
        interrupt.signame = summary.interrupted
        raise interrupt
    index = report.build_report(spec.run_dir, jobs=jobs, cells=[cell.output_dir for cell in spec.cells])
    lap("report")
    parts = ", ".join(f"{stage} {_duration(seconds)}" for stage, seconds in timings.items())
    print(f"study: {_duration(time.perf_counter() - start)} ({parts})")
    return index, summary.ok


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"
