"""Scale-out on a real Ray instance (2 CPUs) that this module starts and stops: extraction and
grids on Ray give the local executor's outputs, failure summary, exit status and resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from test_study import ROOT, matt, params_file

from mattlib import executors, features, runner
from mattlib.data import fma


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray instance with 2 CPUs; ``matt … --address`` joins it from another process."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _some_tracks(root, n: int = 9) -> dict:
    """``n`` demo tracks plus the faulty clips (empty, truncated, short)."""
    manifest = pd.read_csv(root / "demo_manifest.csv", keep_default_na=False)
    ids = sorted(set(manifest.loc[manifest["fault"] != "", "track_id"]) | set(manifest["track_id"][:n]))
    return {int(t): fma.audio_path(root, int(t), subset="medium") for t in ids}


@pytest.mark.slow
def test_extraction_on_ray_equals_local(tiny_study, tmp_path, ray_address):
    paths = _some_tracks(tiny_study["data_root"])
    mel = features.MelSettings(**tiny_study["mel"])
    with executors.RayExecutor(address=ray_address) as executor:
        for kind, settings in (("fma518", None), ("mel", mel)):
            local = features.extract(
                paths,
                kind=kind,
                out=tmp_path / "local",
                jobs=2,
                settings=settings,
                progress=False,
                chunk_size=3,
                device="cpu",
            )
            on_ray = features.extract(
                paths,
                kind=kind,
                out=tmp_path / "ray",
                settings=settings,
                progress=False,
                chunk_size=3,
                device="cpu",
                executor=executor,
            )
            assert (on_ray.done, on_ray.failed) == (local.done, local.failed) == (len(paths) - 2, 2)
            for name in ("features.csv", "index.csv", "failures.csv", "mel.npy"):
                a, b = (Path(r.paths["folder"]) / name for r in (local, on_ray))
                if a.exists() or b.exists():
                    # same code, same single-threaded BLAS: the bytes are equal, not just close
                    assert a.read_bytes() == b.read_bytes(), (kind, name)
    failures = pd.read_csv(tmp_path / "ray" / "fma518" / "failures.csv")
    assert len(failures) == 2 and failures["error"].str.len().gt(0).all()
    # resume: a second run on Ray reuses every finished track and extracts nothing
    with executors.RayExecutor(address=ray_address) as executor:
        again = features.extract(paths, kind="fma518", out=tmp_path / "ray", progress=False, executor=executor)
    assert again.reused == len(paths) - 2 and again.done == 0


def _summary_lines(stdout: str) -> list[str]:
    """The run's summary without the run folder (which differs between the two runs)."""
    lines = stdout.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    return [lines[start].split(": ", 1)[1]] + [line.split("executed notebook:")[0] for line in lines[start + 1 :]]


GRID = [
    {
        "notebook": "03_baselines",
        "grid": {"feature_set": ["mfcc"], "model": ["lr", "knn"]},
        "resources": {"num_cpus": 1},
    },
    # a deliberately crashing cell: valid settings, but a classic baseline cannot read the log-mel
    {"notebook": "03_baselines", "params": {"model": "svm", "feature_set": "mel"}},
]


@pytest.mark.slow
def test_grid_on_ray_has_the_local_summary_exit_status_and_metrics(tiny_study, tmp_path, ray_address):
    runs = {}
    for name, extra in (("local", ["--jobs", "2"]), ("ray", ["--executor", "ray", "--address", ray_address])):
        spec = params_file(tmp_path / f"{name}.yaml", tiny_study, GRID, run=f"grid-{name}")
        runs[name] = matt("run", str(spec), "--cell-timeout", "300", *extra)
    local, on_ray = runs["local"], runs["ray"]
    assert local.returncode == on_ray.returncode == 1, on_ray.stdout + on_ray.stderr
    assert "2 executed, 0 already finished (skipped), 1 failed" in on_ray.stdout
    assert sorted(_summary_lines(on_ray.stdout)) == sorted(_summary_lines(local.stdout))
    out = tiny_study["base"] / "outputs"
    for cell in ("mfcc-lr", "mfcc-knn"):
        a, b = (
            json.loads((out / f"grid-{n}" / "03_baselines" / cell / "metrics.json").read_text())
            for n in ("local", "ray")
        )
        assert [r["summary"] for r in a["results"]] == [r["summary"] for r in b["results"]]
    assert not (out / "grid-ray" / "03_baselines" / "mfcc-svm" / "metrics.json").exists()


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes(tiny_study, tmp_path, ray_address):
    spec = params_file(
        tmp_path / "resume.yaml",
        tiny_study,
        [
            {"notebook": "03_baselines", "grid": {"feature_set": ["mfcc"], "model": ["lr", "knn", "sklearn_mlp"]}},
        ],
        run="resume",
    )
    cells = tiny_study["base"] / "outputs" / "resume" / "03_baselines"
    command = [sys.executable, "-m", "mattlib.cli", "run", str(spec), "--executor", "ray", "--address", ray_address]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list(cells.glob("*/metrics.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while the other cells still run
    proc.communicate(timeout=300)  # cancelling tasks and leaving Ray takes long on a loaded machine
    finished = {p.parent.name: p.stat().st_mtime_ns for p in cells.glob("*/metrics.json")}
    assert proc.returncode != 0 and 1 <= len(finished) < 3
    time.sleep(2)  # the cancelled tasks stop their papermill processes

    second = matt("run", str(spec), "--executor", "ray", "--address", ray_address)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{3 - len(finished)} executed, {len(finished)} already finished (skipped), 0 failed" in second.stdout
    assert {c: (cells / c / "metrics.json").stat().st_mtime_ns for c in finished} == finished
    assert all((cells / c / "metrics.json").exists() for c in ("mfcc-lr", "mfcc-knn", "mfcc-sklearn_mlp"))


def test_resources_in_a_params_file_are_validated(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("notebooks: [{notebook: 03_baselines, resources: {num_gpu: 1}}]")
    with pytest.raises(runner.GridError, match=r"unknown resource 'num_gpu'; valid: num_cpus, num_gpus, memory"):
        runner.load_grid(path)
    path.write_text("notebooks: [{notebook: 04_mil, grid: {seed: [0, 1]}, resources: {num_gpus: 1}}]")
    assert [c.resources for c in runner.load_grid(path).cells] == [{"num_gpus": 1.0}] * 2


def test_ray_executor_without_ray_is_one_clear_line(tmp_path):
    # Ray made unimportable in a fresh interpreter, as on an install without the [ray] extra
    code = (
        "import sys; sys.modules['ray'] = None; from mattlib import cli; "
        f"sys.exit(cli.main(['run', {str(ROOT / 'params' / 'demo.yaml')!r}, '--executor', 'ray']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "matt run: error: --executor ray needs Ray, an optional extra: "
        "pip install 'mattlib[ray]' (or pip install 'ray[default]')"
    )


def test_local_executor_takes_no_address():
    with (
        pytest.raises(ValueError, match="--address joins a Ray cluster: use it with --executor ray"),
        executors.open_executor("local", address="10.0.0.1:6379"),
    ):
        pass
