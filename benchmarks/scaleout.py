"""Benchmark the feature-based study at FMA-medium scale, locally and on Ray, and project it out.

Steps (each model kind in a fresh Python process, so its peak memory is its own):

1. ``mattlib.data.demo.generate_fma_medium_features``: 25,000 tracks in FMA medium's shape, with a
   518-column ``features.csv`` (no audio), under ``outputs/benchmarks/fma_medium_features/``.
2. One Table-I cell per model kind on all 518 features (20,000 x 518 training tracks): LR, kNN,
   SVM, MLP (scikit-learn), and the torch MLP + MIL (mean) / + MATT for ``--epochs`` epochs:
   wall seconds of loading the study data, of fitting + evaluating, and the process's peak RSS.
3. A small papermill grid (``--grid-cells`` LR cells of notebook 03 on different feature sets)
   with the local executor (``--jobs 2``) and with Ray on this machine (2 CPUs): the overhead ratio.
4. FMA's 518 statistics of the real clips in ``tests/data`` (30 s each) on Ray vs locally: the
   per-clip cost (and a check that both give equal values).
5. A projection, from the measured per-cell costs, of Table I's feature-based grid of
   ``params/fma_medium.yaml`` and of fma_large's 518-feature extraction on N nodes x M cores.

Usage::

    .venv/bin/python benchmarks/scaleout.py [--epochs 3] [--grid-cells 4]

Writes ``outputs/benchmarks/scaleout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mattlib.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "outputs" / "benchmarks"
DATA = OUT / "fma_medium_features"
FMA_LARGE_TRACKS = 106_574
# Table I's feature-based cells in params/fma_medium.yaml: 12 feature sets x (LR, kNN, SVM, MLP)
# in 03; MLP+MIL and MLP+MATT x 3 seeds in 04 / 05; gated and the case study x 3 seeds on "all".
TABLE1_CELLS = {"lr": 12, "knn": 12, "svm": 12, "sklearn_mlp": 12, "mlp_mean": 36, "mlp_matt": 42}


def one_cell(kind: str, epochs: int) -> dict:
    """Run one cell's work in this process (called in a child process); returns its figures."""
    from mattlib.study import experiment
    from mattlib.study.settings import Settings

    start = time.perf_counter()
    base = Settings(data_root=DATA, subset="medium", cache_dir=OUT / "cache", feature_set="all", seed=0)
    data = experiment.load(base)
    loaded = time.perf_counter()
    if kind in ("lr", "knn", "svm", "sklearn_mlp"):
        result = experiment.run_baseline(data, base.replace(model=kind))
    else:
        settings = base.replace(
            model="mlp", pooling=kind.split("_")[1], epochs=epochs, patience=None, device="cpu", hidden=(512, 256)
        )
        result = experiment.run_bag_model(data, settings, progress=False)
    done = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    metrics = result.results[0].metrics
    return {
        "kind": kind,
        "train_tracks": int((data.membership["split"] == "training").sum()),
        "load_s": round(loaded - start, 2),
        "fit_eval_s": round(done - loaded, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # process total, imports included
        "epochs": epochs if kind.startswith("mlp_") else None,
        "test_accuracy": round(float(metrics["track_accuracy"]), 4),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def measure_cells(kinds: list[str], epochs: int, *, parallel: bool) -> list[dict]:
    """One process per kind, one after the other or all at once (``parallel``: then wall times
    include the competition; CPU seconds and peak memory do not)."""
    command = [sys.executable, __file__, "--epochs", str(epochs), "--one"]
    procs = []
    rows = []
    for kind in kinds:
        procs.append(subprocess.Popen([*command, kind], stdout=subprocess.PIPE, text=True, cwd=REPO))
        if not parallel:
            rows.append(json.loads(procs[-1].communicate()[0].strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    if parallel:
        for proc in procs:
            rows.append(json.loads(proc.communicate()[0].strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def grid_times(n_cells: int) -> dict:
    """The same small papermill grid with the local executor and with Ray on this machine."""
    import yaml

    sets = ["mfcc", "chroma", "spectral_contrast", "tonnetz", "zero_crossing", "rms_energy"][:n_cells]
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("local", ["--jobs", "2"]), ("ray", ["--executor", "ray"])):
            spec = {
                "run": f"scaleout-{name}",
                "output_root": str(Path(tmp) / "runs"),
                "defaults": {"data_root": str(DATA), "cache_dir": str(OUT / "cache")},
                "notebooks": [{"notebook": "03_baselines", "grid": {"feature_set": sets, "model": ["lr"]}}],
            }
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(spec))
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "mattlib.cli", "run", str(path), *extra],
                capture_output=True,
                text=True,
                cwd=REPO,
                check=False,
            )
            times[name] = round(time.perf_counter() - start, 1)
            if out.returncode != 0:
                raise RuntimeError(f"grid on {name} failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
            print(name, times[name], "s", flush=True)
    return {
        "cells": len(sets),
        "cell": "03_baselines LR (papermill)",
        "local_jobs2_s": times["local"],
        "ray_2cpus_s": times["ray"],
        "ray_over_local": round(times["ray"] / times["local"], 2),
    }


def extraction(clips: list[Path]) -> dict:
    """518 statistics of real 30 s clips: per-clip CPU cost locally (1 job) and on Ray (2 CPUs)."""
    import pandas as pd

    from mattlib import executors, features

    paths = {int(p.stem): p for p in clips}
    features.compute_fma518(clips[0])  # warm-up (librosa / numba caches)
    figures = {"clips": len(paths)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        features.extract(paths, kind="fma518", out=Path(tmp) / "local", jobs=1, progress=False, chunk_size=1)
        figures["local_1job_s_per_clip"] = round((time.perf_counter() - start) / len(paths), 2)
        with executors.RayExecutor(num_cpus=2) as executor:
            start = time.perf_counter()
            features.extract(
                paths, kind="fma518", out=Path(tmp) / "ray", progress=False, chunk_size=1, executor=executor
            )
            figures["ray_2cpus_wall_s"] = round(time.perf_counter() - start, 2)
        a, b = (
            pd.read_csv(Path(tmp) / k / "fma518" / "features.csv", index_col=0, header=[0, 1, 2])
            for k in ("local", "ray")
        )
        figures["ray_equals_local"] = bool(a.equals(b))
    return figures


def projection(cells: list[dict], extract: dict, *, epochs: int) -> dict:
    """Wall time of Table I's feature cells and of fma_large's extraction on N nodes x M cores.

    A cell costs its process's CPU seconds (one thread; wall time on a shared machine measures
    the neighbours) plus papermill's 4 s start-up; torch cells are scaled from ``epochs`` to the
    params file's 100 epochs (an upper bound: early stopping usually ends sooner). Every cell is
    taken at "all"-feature cost (an upper bound for the smaller sets); one cell per core.
    """
    by_kind = {c["kind"]: c for c in cells}
    startup = 4.0
    cost = {}
    for kind, row in by_kind.items():
        scale = 100 / epochs if kind.startswith("mlp_") else 1
        fit_share = row["fit_eval_s"] / (row["load_s"] + row["fit_eval_s"])  # of the CPU time
        cost[kind] = round(startup + row["cpu_s"] * (1 - fit_share + fit_share * scale), 1)
    total = sum(cost[k] * TABLE1_CELLS[k] for k in cost)
    longest = max(cost.values())
    clip_s = extract["local_1job_s_per_clip"]
    shapes = [(1, 2), (1, 32), (4, 32), (16, 32), (64, 32)]
    return {
        "assumptions": projection.__doc__.split("\n\n")[1].strip().replace("\n    ", " "),
        "cell_seconds": cost,
        "table1_cells": TABLE1_CELLS,
        "table1_cpu_hours": round(total / 3600, 2),
        "table1_hours_on": {f"{n}x{m}": round(max(total / (n * m), longest) / 3600, 2) for n, m in shapes},
        "fma_large_518_cpu_hours": round(FMA_LARGE_TRACKS * clip_s / 3600, 1),
        "fma_large_518_hours_on": {f"{n}x{m}": round(FMA_LARGE_TRACKS * clip_s / (n * m) / 3600, 2) for n, m in shapes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the torch MLP cells (then scaled)")
    parser.add_argument("--grid-cells", type=int, default=4, help="LR cells in the local-vs-Ray grid")
    parser.add_argument("--kinds", default="lr,knn,svm,sklearn_mlp,mlp_mean,mlp_matt")
    parser.add_argument("--parallel", action="store_true", help="measure the model kinds at the same time")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_cell(args.one, args.epochs)))
        return
    from mattlib.data import demo

    start = time.perf_counter()
    demo.generate_fma_medium_features(DATA)
    generated = round(time.perf_counter() - start, 1)
    cells = measure_cells(args.kinds.split(","), args.epochs, parallel=args.parallel)
    grid = grid_times(args.grid_cells)
    extract = extraction(sorted((REPO / "tests" / "data" / "fma_small").rglob("*.mp3")))
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dataset": {"root": str(DATA.relative_to(REPO)), "tracks": 25_000, "generate_s": generated},
        "cells": cells,
        "grid": grid,
        "extraction_fma518": extract,
        "projection": projection(cells, extract, epochs=args.epochs),
    }
    print(json.dumps(report["projection"], indent=2))
    print(f"wrote {write_json(OUT / 'scaleout.json', report)}")


if __name__ == "__main__":
    main()
