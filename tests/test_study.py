"""The study end to end, for real: papermill runs of the real notebooks on a tiny demo, the grid
runner (failure isolation, resume), the report, and the experiment API behind the notebooks."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from mattlib import runner
from mattlib.features import MelSettings
from mattlib.runner import schedule
from mattlib.study import experiment
from mattlib.study.settings import Settings
from mattlib.views import report

PLOTLY = "application/vnd.plotly.v1+json"  # drawn by JupyterLab's plotly extension and the report
ROOT = Path(__file__).resolve().parent.parent
TINY = {"epochs": 3, "patience": 3, "hidden": [32], "widths": [4, 8, 8, 8], "batch_size": 8}


def params_file(path: Path, study: dict, notebooks: list, run: str = "tiny") -> Path:
    mel = study["mel"]
    spec = {
        "run": run,
        "output_root": str(study["base"] / "outputs"),
        "defaults": {
            "data_root": str(study["data_root"]),
            "cache_dir": str(study["cache_dir"]),
            "mel_sr": mel["sr"],
            "mel_seconds": mel["seconds"],
            "mel_n_mels": mel["n_mels"],
            "mel_hop_length": mel["hop_length"],
            "mel_n_fft": mel["n_fft"],
            **TINY,
        },
        "notebooks": notebooks,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def matt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mattlib.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


@pytest.mark.slow
def test_grid_failure_isolation_resume_and_report(tiny_study, tmp_path):
    spec = params_file(
        tmp_path / "grid.yaml",
        tiny_study,
        [
            {"notebook": "03_baselines", "grid": {"feature_set": ["mfcc"], "model": ["lr", "knn"]}},
            # a deliberately crashing cell (valid settings): 03 reads a log-mel of settings never extracted
            {"notebook": "03_baselines", "params": {"model": "svm", "feature_set": "mel"}},
            {"notebook": "06_long_tail"},  # reads the whole run: re-runs whenever a cell before it ran
        ],
        run="failing",
    )
    first = matt("run", str(spec), "--jobs", "2", "--cell-timeout", "300")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "3 executed, 0 already finished (skipped), 1 failed" in first.stdout
    assert "FAILED 03_baselines/mel-svm: FileNotFoundError" in first.stdout
    run_dir = tiny_study["base"] / "outputs" / "failing" / "03_baselines"
    # a failed attempt is kept apart from the results (named in the summary)
    attempt = run_dir.parent / ".attempts" / "03_baselines" / "mel-svm"
    assert f"executed notebook: {attempt / 'notebook.ipynb'}" in first.stdout
    failed_nb = nbformat.read(attempt / "notebook.ipynb", as_version=4)
    errors = [o for c in failed_nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "FileNotFoundError"
    assert not (run_dir / "mel-svm").exists()  # never succeeded: no result folder
    for cell in ("mfcc-lr", "mfcc-knn"):
        metrics = json.loads((run_dir / cell / "metrics.json").read_text())
        assert [r["label"] for r in metrics["results"]] == [
            cell.split("-")[1].upper(),
            cell.split("-")[1].upper() + "+late",
        ]
        assert 0.0 <= metrics["results"][0]["summary"]["accuracy"] <= 1.0
    finished = {c: (run_dir / c / "notebook.ipynb").stat().st_mtime_ns for c in ("mfcc-lr", "mfcc-knn")}

    second = matt("run", str(spec), "--jobs", "2", "--cell-timeout", "300")
    # the failed cell runs again (and fails again), so 06 is stale and runs again too
    assert "1 executed, 2 already finished (skipped), 1 failed" in second.stdout
    assert {c: (run_dir / c / "notebook.ipynb").stat().st_mtime_ns for c in finished} == finished

    outputs = run_dir.parent.parent
    out = matt("report", str(outputs))  # the parent of the run folder: refused, naming the run
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert f"matt report: error: {outputs} holds runs, not cells: give one of them (" in out.stderr
    assert str(outputs / "failing") in out.stderr
    from mattlib.locks import folder_lock

    with folder_lock(run_dir.parent, what="run folder"):  # as a matt run still writing the run would
        out = matt("report", str(run_dir.parent))
    assert out.returncode == 0 and "reporting a run in progress" in out.stderr, out.stderr
    table1 = pd.read_csv(run_dir.parent / "report" / "table1.csv")
    assert sorted(table1["model"]) == ["KNN", "KNN+late", "LR", "LR+late"]
    assert set(table1["feature_set"]) == {"mfcc"}
    assert table1.loc[table1["model"] == "LR", "paper_accuracy"].item() == 58.0  # the paper's Table I


@pytest.mark.slow
def test_every_notebook_runs_and_the_report_shows_the_study(tiny_study, tmp_path):
    spec = params_file(
        tmp_path / "study.yaml",
        tiny_study,
        [
            {"notebook": "01_data_exploration", "params": {"max_bag_size": 4}},
            {"notebook": "02_features", "params": {"jobs": 1}},
            {"notebook": "03_baselines", "params": {"feature_set": "all", "model": "lr"}},
            {"notebook": "04_mil", "params": {"feature_set": "all", "model": "mlp", "pooling": "mean"}},
            {"notebook": "04_mil", "params": {"feature_set": "all", "model": "mlp", "pooling": "none"}},
            {"notebook": "04_mil", "params": {"feature_set": "mel", "model": "crnn", "pooling": "none"}},
            {"notebook": "05_matt", "params": {"feature_set": "all", "model": "mlp", "pooling": "matt"}},
            {"notebook": "05_matt", "params": {"feature_set": "mel", "model": "crnn_tf", "pooling": "matt"}},
            {"notebook": "07_case_study", "params": {"feature_set": "all", "model": "mlp", "pooling": "matt"}},
            {"notebook": "06_long_tail"},
        ],
    )
    summary = runner.run_grid(spec, jobs=2, progress=False, timeout=300)
    assert summary.ok, summary.describe()
    assert len(summary.results) == 10
    run_dir = tiny_study["base"] / "outputs" / "tiny"

    explore = json.loads((run_dir / "01_data_exploration" / "default" / "metrics.json").read_text())
    assert explore["crossing_artists"] == 0 and explore["n_genres"] == 16
    above = explore["above_cap"]  # tracks the CRNN cells' cap touches, per split
    assert above["max_bag_size"] == 4 and above["test"]["tracks_in_them"] >= above["test"]["bags_above"] * 5
    assert (
        explore["tail_sets"]["<100"]
        == ["Easy Listening", "Blues", "Soul-RnB", "Spoken"][: len(explore["tail_sets"]["<100"])]
    )

    matt_cell = run_dir / "05_matt" / "all-mlp-matt"
    attention = json.loads((matt_cell / "attention.json").read_text())
    bag = attention["bags"][0]
    assert len(attention["classes"]) == 16 and bag["queries"] == attention["classes"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in bag["attention"])
    # the executed notebook keeps static attention figures, viewable without a kernel
    nb = nbformat.read(matt_cell / "notebook.ipynb", as_version=4)
    figures = [o["data"][PLOTLY] for c in nb.cells for o in c.get("outputs", []) if PLOTLY in o.get("data", {})]
    assert any("attention per track" in json.dumps(f["layout"]) for f in figures)  # a subplot title
    html = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert not any("plotly.js v" in h for h in html)  # no inlined plotly.js (4.8 MB) per notebook
    assert "widgets" in nb.metadata  # widget state saved by papermill

    case = json.loads((run_dir / "07_case_study" / "all-mlp-matt" / "metrics.json").read_text())
    assert [r["evaluation"] for r in case["results"]] == [
        "case study: bags",
        "case study: single",
        "case study: trained on single",
    ]

    index = report.build_report(run_dir, jobs=2)  # pages rendered by two processes, as `matt study` does
    page = index.read_text()
    assert page.index("Do bags, and attention over them, help the rare genres?") < page.index("Table I")
    for heading in (
        "Table I",
        "All paired comparisons",
        "Table II",
        "Precision–recall",
        "Attention over a few bags",
        "Case study",
    ):
        assert heading in page
    t1 = pd.read_csv(index.parent / "table1.csv")
    assert {"LR", "MLP (torch)", "MLP (torch)+late", "MLP+MIL", "MLP+MATT", "CRNN", "CRNN-TF+MATT"} <= set(t1["model"])
    assert t1["ci_low"].notna().all() and (t1["ci_low"] <= t1["accuracy"]).all()
    paired = pd.read_csv(index.parent / "paired.csv")
    assert {
        "MLP+MATT − MLP+MIL",
        "MLP+MATT − MLP (torch)+late",
        "MLP+MIL − MLP (torch)+late",
        "MLP+MIL − MLP (torch)",
    } <= set(paired["comparison"])
    assert (t1["n_seeds"] == 1).all()  # the case study's bag model does not count as a second seed
    t2 = pd.read_csv(index.parent / "table2.csv")
    assert t2.loc[t2["model"] == "MLP+MATT", "published <100 top2"].item() == "28.24"
    rendered = (index.parent / "notebooks" / "05_matt__all-mlp-matt.html").read_text()
    assert "../plotly.min.js" in rendered and "attention per track" in rendered
    assert "per model family" in page and "Paired differences A" in page  # PR panels, forest plot (JSON-escaped −)
    assert "class='verdict'" in page and "paired comparisons" in page
    # attention scored against the demo's truth, per pooling, with album intervals
    assert "Does attention find the tracks that carry the genre?" in page
    recovered = pd.read_csv(index.parent / "attention_recovery.csv")
    assert set(recovered["model"]) >= {"MLP+MATT", "MLP+MIL"} and set(recovered["score"]) == {
        "auc",
        "share_above_uniform",
    }
    mean_pooling = recovered[recovered["model"] == "MLP+MIL"].set_index("score")["mean"]
    assert mean_pooling["auc"] == 0.5 and abs(mean_pooling["share_above_uniform"]) < 1e-4  # uniform weights
    # every cell that shows a figure has a figure output, or one line saying why not, in every notebook
    quiet = []
    for executed in run_dir.glob("*/*/notebook.ipynb"):
        for c in nbformat.read(executed, as_version=4).cells:
            if c.cell_type == "code" and ".show()" in c.source:
                kinds = {k for o in c.get("outputs", []) for k in o.get("data", {})}
                text = "".join(o.get("text", "") for o in c.get("outputs", []))
                if not kinds & {PLOTLY, "image/png"}:
                    assert "no musicnn figure: none of the 112 clips" in text, f"{executed}: {c.source[:60]!r}"
                    quiet.append(executed.parent.parent.name)
    assert quiet == ["02_features"]  # the tiny study's 2 s clips are shorter than one musicnn patch


@pytest.mark.slow
def test_experiment_api_on_features(tiny_study):
    settings = Settings(data_root=tiny_study["data_root"], cache_dir=tiny_study["cache_dir"], feature_set="mfcc")
    data = experiment.load(settings)
    assert data.instance_shape == (140,)
    assert len(data.classes) == 16 and data.classes[0] == "International"  # FMA's genre-id order
    # the demo's empty and truncated clips failed extraction and are left out of the bags
    assert data.missing_features >= 1
    result = experiment.run_baseline(data, settings.replace(model="lr", pooling="none"))
    assert [r.label for r in result.results] == ["LR", "LR+late"]
    test_tracks = (data.membership["split"] == "test").sum()
    assert result.main.metrics["n_tracks"] == test_tracks
    assert result.results[1].metrics["n_bags"] < test_tracks  # late fusion scores album bags
    with pytest.raises(ValueError, match="unknown model 'xgb'; valid: lr, knn, svm, sklearn_mlp, mlp"):
        settings.replace(model="xgb")  # validated once, at the boundary
    with pytest.raises(ValueError, match="unknown baseline 'crnn'; valid: lr, knn, svm, sklearn_mlp"):
        experiment.run_baseline(data, settings.replace(model="crnn"))
    with pytest.raises(ValueError, match="does not read feature set 'mfcc'"):
        experiment.run_bag_model(data, settings.replace(model="crnn", pooling="matt"))
    with pytest.raises(ValueError, match="unknown feature_set 'mfccs'; valid: chroma"):
        settings.replace(feature_set="mfccs")


@pytest.mark.slow
def test_the_explorer_reads_the_nearest_cached_log_mel_and_says_so(tiny_study, tmp_path):
    data = experiment.load(
        Settings(data_root=tiny_study["data_root"], cache_dir=tiny_study["cache_dir"], feature_set="mfcc")
    )
    exact = experiment.mel_lookup(data, cache_dir=tiny_study["cache_dir"], mel=MelSettings(**tiny_study["mel"]))
    first = int(data.membership["track_id"].iloc[0])
    assert exact and exact.note == "" and exact(first).shape[0] == 96
    paper = experiment.mel_lookup(
        data, cache_dir=tiny_study["cache_dir"], mel=MelSettings()
    )  # the 29 s default: not cached
    assert "no log-mel cached for these settings (29 s at 12000 Hz, 96 bands)" in paper.note
    assert "nearest cached one: mel-" in paper.note and "(2 s at 12000 Hz" in paper.note
    np.testing.assert_array_equal(paper(first), exact(first))
    none = experiment.mel_lookup(data, cache_dir=tmp_path, mel=MelSettings())
    assert not none and none.note.startswith(f"no log-mel cached under {tmp_path}; run: matt features --kind mel")


def test_tail_thresholds():
    fma_medium = pd.Series(experiment.FMA_MEDIUM_TRAIN_COUNTS)
    assert experiment.tail_thresholds(fma_medium) == (100.0, 200.0, 1000.0)
    assert experiment.study_tail_sets(fma_medium) == {
        "<100": ["Easy Listening", "Blues", "Soul-RnB", "Spoken"],
        "<200": ["Easy Listening", "Blues", "Soul-RnB", "Spoken", "Country"],
    }
    # a small long-tail dataset (FMA medium / 20, at least 3 per genre): a count threshold of 100
    # would put every genre in the tail; the thresholds fall between the same rarest genres instead
    small = (fma_medium / 20).round().clip(lower=3)
    assert experiment.tail_thresholds(small) == ((5 + 7) / 2, (7 + 15) / 2, (47 + 52) / 2)
    sets = {k: set(v) for k, v in experiment.study_tail_sets(small).items()}
    assert sets == {k: set(v) for k, v in experiment.study_tail_sets(fma_medium).items()}
    head = experiment.tail_thresholds(small)[2]
    assert sorted(small[small >= head].index) == sorted(fma_medium[fma_medium >= 1000].index)


def test_cli_errors_are_clear(tmp_path):
    out = matt("run", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2 and "params file not found" in out.stderr
    out = matt("features", "--root", str(tmp_path), "--kind", "fma518", "--out", str(tmp_path / "c"))
    assert out.returncode == 2 and "no dataset found at" in out.stderr and "collection.csv" in out.stderr
    out = matt("features", "--root", str(tmp_path), "--kind", "mfcc", "--out", str(tmp_path / "c"))
    assert out.returncode == 2 and "invalid choice: 'mfcc'" in out.stderr
    out = matt("features", "--root", str(tmp_path), "--kind", "mel", "--out", str(tmp_path / "c"), "--mel-crop", "mid")
    assert out.returncode == 2 and "unknown mel_crop 'mid'; valid: start, centre, center" in out.stderr
    out = matt("study", "--data", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and "no dataset found at" in out.stderr and "matt demo-data" in out.stderr
    out = matt("demo-data", "--out", str(tmp_path / "demo"), "--tracks", "50")
    assert out.returncode == 2 and "matt demo-data: error:" in out.stderr and "n_tracks" in out.stderr
    out = matt("report", str(tmp_path), "--jobs", "0")
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "matt report: error: jobs must be an int >= 1, got 0"
    ]


@pytest.mark.slow
def test_data_exploration_on_real_fma_rows(fma_root, tmp_path):
    spec = tmp_path / "real.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "run": "real",
                "output_root": str(tmp_path / "outputs"),
                "defaults": {"data_root": str(fma_root), "subset": "medium"},
                "notebooks": ["01_data_exploration"],
            }
        )
    )
    summary = runner.run_grid(spec, jobs=1, progress=False, timeout=300)
    assert summary.ok, summary.describe()
    metrics = json.loads(
        (tmp_path / "outputs" / "real" / "01_data_exploration" / "default" / "metrics.json").read_text()
    )
    assert metrics["n_tracks"] == 194  # fma_medium rows of the real sample (small ∪ medium)
    assert metrics["crossing_artists"] == 0 and metrics["crossing_albums"] == 0
    assert sum(metrics["tracks_per_split"].values()) == 194


def test_grid_gives_each_running_cell_its_own_slot(monkeypatch, tmp_path):
    import threading
    import time as _time

    running, seen, lock = set(), [], threading.Lock()

    def fake_run_cell(cell, *, slot, jobs, timeout, **_):
        with lock:
            assert slot not in running, "two running cells share a slot (GPU)"
            running.add(slot)
            seen.append(slot)
        _time.sleep(0.05 if cell.cell_id.endswith("0") else 0.01)
        with lock:
            running.discard(slot)
        return runner.CellResult(cell, "done")

    monkeypatch.setattr(schedule, "run_cell", fake_run_cell)
    cells = [runner.Cell("03_baselines.ipynb", f"c{i}", {}, tmp_path / f"c{i}") for i in range(9)]
    spec = runner.GridSpec(run="slots", run_dir=tmp_path, stages=[cells])
    summary = runner.run_grid(spec, jobs=3, progress=False, force=True)
    assert summary.ok and len(summary.results) == 9
    assert set(seen) == {0, 1, 2}


@pytest.mark.slow
def test_a_cell_that_runs_too_long_fails_instead_of_stalling_the_grid(tiny_study, tmp_path):
    spec = params_file(
        tmp_path / "slow.yaml",
        tiny_study,
        [
            {
                "notebook": "04_mil",
                "params": {
                    "feature_set": "all",
                    "model": "mlp",
                    "pooling": "mean",
                    "epochs": 100_000,
                    "patience": 100_000,
                },
            },
        ],
        run="too_long",
    )
    summary = runner.run_grid(spec, jobs=1, progress=False, timeout=8)
    [result] = summary.results
    assert result.status == "failed" and result.seconds < 120
    assert "timed out" in result.error.lower() or "time limit" in result.error, result.error
