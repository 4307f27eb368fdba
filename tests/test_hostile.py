"""Hostile input at the command line: one line on stderr naming the problem and the fix, exit 2,
nothing written outside the folders given (issue 18's cases; params files: test_grid_spec.py)."""

import subprocess
import sys

import pytest

from mattlib.study.settings import Settings


def matt(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mattlib.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("port", ["-1", "0", "99999", "eighty"])
def test_lab_refuses_a_port_outside_1_to_65535(port):
    out = matt("lab", "--port", port, "--no-browser")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].endswith(f"port must be an integer from 1 to 65535, got '{port}'")
    assert "Traceback" not in out.stderr


def test_report_refuses_folders_that_hold_no_finished_cell(tmp_path):
    out = matt("report", str(tmp_path))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"matt report: error: {tmp_path}: no finished cell (no */*/metrics.json); run: matt run params/<file>.yaml first"
    ]
    (tmp_path / "03_baselines" / "all-lr").mkdir(parents=True)  # a cell that started and never finished
    out = matt("report", str(tmp_path))
    assert out.returncode == 2 and "notebook folders 03_baselines but no finished cell" in out.stderr
    file = tmp_path / "notes.txt"
    file.write_text("x")
    out = matt("report", str(file))
    assert out.returncode == 2 and f"{file} is a file; give a run folder" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["03_baselines", "notes.txt"]  # no report/ written


def test_run_refuses_a_run_name_that_leaves_output_root(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(f"run: ../../escaped\noutput_root: {tmp_path / 'out'}\nnotebooks: [01_data_exploration]\n")
    out = matt("run", str(params), cwd=tmp_path)
    assert out.returncode == 2 and "run must be one folder name" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]
    assert not (tmp_path.parent.parent / "escaped").exists()


def demo_copy(root, copy):
    """A copy of a demo root's metadata and marker (its audio linked, not copied); returns the
    copy's tracks.csv, for a test to damage."""
    import shutil

    shutil.copytree(root / "fma_metadata", copy / "fma_metadata")
    shutil.copy(root / "demo_complete.json", copy)
    (copy / "fma_medium").symlink_to(root / "fma_medium")
    return copy / "fma_metadata" / "tracks.csv"


def one_cell_params(path, *, root, cache, **defaults):
    """A params file running 03_baselines (LR on mfcc) on ``root``, into ``<path's folder>/out``."""
    import yaml

    spec = {
        "run": path.stem,
        "output_root": str(path.parent / "out"),
        "defaults": {"data_root": str(root), "cache_dir": str(cache), **defaults},
        "notebooks": [{"notebook": "03_baselines", "params": {"feature_set": "mfcc", "model": "lr"}}],
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def leaky_copy(root, tmp_path):
    """A copy of a demo root's metadata where one training track of a two-track album is moved to test."""
    import pandas as pd

    copy = tmp_path / "leaky"
    path = demo_copy(root, copy)
    tracks = pd.read_csv(path, index_col=0, header=[0, 1])
    train = tracks[tracks[("set", "split")] == "training"]
    album = train.groupby(("album", "id")).filter(lambda g: len(g) >= 2)
    moved = album.index[0]
    tracks.loc[moved, ("set", "split")] = "test"
    tracks.to_csv(path)
    return copy, int(tracks.loc[moved, ("album", "id")])


@pytest.mark.slow
def test_a_leaking_split_stops_the_run_unless_allowed_and_the_report_says_so(tiny_study, tmp_path):
    from mattlib import runner
    from mattlib.study import experiment

    root, album = leaky_copy(tiny_study["data_root"], tmp_path)
    params = one_cell_params(tmp_path / "leaky.yaml", root=root, cache=tiny_study["cache_dir"])
    out = matt("run", str(params))
    assert out.returncode == 2, out.stdout + out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"matt run: error: data_root {root}: the split leaks: album-artist keys in more than one")
    assert f"(album {album} / artist " in line and "test, training" in line and "holding" in line
    assert "set allow_leakage: true to run anyway" in line
    assert not (tmp_path / "out" / "leaky" / "03_baselines").exists()  # no cell started
    from mattlib.data.bags import LeakageError

    with pytest.raises(LeakageError, match="the split leaks"):  # a notebook run on its own refuses too
        experiment.load(Settings(data_root=root, cache_dir=tiny_study["cache_dir"], feature_set="mfcc"))

    one_cell_params(params, root=root, cache=tiny_study["cache_dir"], allow_leakage=True)
    summary = runner.run_grid(params, jobs=1, progress=False, timeout=300)
    assert summary.ok, summary.describe()
    from mattlib.views import report

    page = report.build_report(tmp_path / "out" / "leaky").read_text()
    assert page.index("This run allowed a leaking split") < page.index("Do bags, and attention over them")


@pytest.mark.slow
def test_a_collection_runs_end_to_end_from_the_command_line(tmp_path):
    """docs/extending.md: a collection.csv of real clips -> matt features -> matt run -> matt report."""
    import shutil
    from pathlib import Path

    import pandas as pd
    import yaml

    clips = sorted((Path(__file__).parent / "data" / "fma_small").glob("*/*.mp3"))
    assert len(clips) == 20
    root = tmp_path / "collection"
    (root / "audio").mkdir(parents=True)
    rows = []
    for i, clip in enumerate(clips):  # 2 genres x 5 albums of 2 tracks; albums 0-2 train, 3 validation, 4 test
        shutil.copy(clip, root / "audio" / clip.name)
        album = i // 2
        split = ["training"] * 3 + ["validation", "test"]
        rows.append(
            {
                "track_id": 1000 + i,
                "album_id": album,
                "artist_id": 50 + album,
                "genre": ["Lo", "Hi"][album % 2],
                "split": split[album // 2],
                "audio": f"audio/{clip.name}",
            }
        )
    pd.DataFrame(rows).to_csv(root / "collection.csv", index=False)
    cache = tmp_path / "cache"
    out = matt("features", "--root", str(root), "--kind", "fma518", "--out", str(cache), "--jobs", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "fma518: 20 tracks: 20 computed, 0 reused, 0 failed" in out.stdout, out.stdout

    params = tmp_path / "collection.yaml"
    spec = {
        "run": "coll",
        "output_root": str(tmp_path / "out"),
        "defaults": {"data_root": str(root), "dataset": "collection", "cache_dir": str(cache)},
        "notebooks": [{"notebook": "03_baselines", "params": {"feature_set": "mfcc", "model": "lr"}}],
    }
    params.write_text(yaml.safe_dump(spec))
    out = matt("run", str(params))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"collection {root}: 20 labelled tracks, 10 bags, 2 genres" in out.stdout
    out = matt("report", str(tmp_path / "out" / "coll"))
    assert out.returncode == 0, out.stdout + out.stderr
    table1 = pd.read_csv(tmp_path / "out" / "coll" / "report" / "table1.csv")
    assert set(table1["model"]) == {"LR", "LR+late"} and (table1["test_tracks"] == 4).all()
    assert table1["ci_low"].isna().all()  # 2 test albums: no interval is estimable, none is printed


def test_feature_workers_are_capped_at_the_cpus_with_one_line(tmp_path):
    import os
    from pathlib import Path

    clip = sorted((Path(__file__).parent / "data" / "fma_small").glob("*/*.mp3"))[0]
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / clip.name).write_bytes(clip.read_bytes())
    out = matt(
        "features",
        "--audio-dir",
        str(tmp_path / "audio"),
        "--kind",
        "fma518",
        "--out",
        str(tmp_path / "c"),
        "--jobs",
        "999",
    )
    assert out.returncode == 0, out.stderr
    cpus = len(os.sched_getaffinity(0))
    assert (
        f"matt features: warning: jobs=999 capped at {cpus}, the CPUs this process may use" in out.stderr.splitlines()
    )
    assert f"jobs={cpus}, cpu)" in out.stdout, out.stdout


def test_the_console_names_the_failures_file_and_the_first_reasons(tmp_path):
    from pathlib import Path

    from mattlib import features

    clip = sorted((Path(__file__).parent / "data" / "fma_small").glob("*/*.mp3"))[0]
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    rep = features.extract({1: clip, 2: empty, 3: tmp_path / "gone.mp3"}, kind="fma518", out=tmp_path, progress=False)
    first, second = str(rep).splitlines()
    assert "2 failed" in first
    assert second.startswith(f"  failures listed in {tmp_path / 'fma518' / 'failures.csv'}, e.g. 2: ")
    assert "empty file (0 bytes)" in second and "3: " in second and "file not found" in second


@pytest.mark.slow
def test_a_demo_tracks_csv_cut_at_a_line_boundary_is_refused(tiny_study, tmp_path):
    from mattlib.data import fma

    root = tmp_path / "cut"
    path = demo_copy(tiny_study["data_root"], root)
    lines = path.read_text().splitlines(keepends=True)
    kept = 3 + int(0.6 * (len(lines) - 3))  # three header rows, then 60 % of the tracks
    path.write_text("".join(lines[:kept]))
    with pytest.raises(fma.FMADataError) as err:
        fma.load_tracks(root)
    assert str(err.value) == (
        f"{path}: {kept - 3} rows where demo_complete.json declares n_tracks 112; the file is cut short or "
        f"edited. Generate the root again (matt demo-data --out {root})"
    )


@pytest.mark.slow
def test_features_missing_for_many_labelled_tracks_stop_the_cell(tiny_study, tmp_path):
    from mattlib import features
    from mattlib.data import datasets
    from mattlib.study import experiment

    paths = datasets.open_dataset(tiny_study["data_root"]).audio_paths(subset="medium")
    half = dict(list(paths.items())[: len(paths) // 2])  # a cache extracted for half the tracks
    features.extract(half, kind="fma518", out=tmp_path / "cache", jobs=2, progress=False)
    with pytest.raises(ValueError, match=r"labelled tracks \(\d+%, more than 5%\) have no mfcc features in"):
        experiment.load(Settings(data_root=tiny_study["data_root"], cache_dir=tmp_path / "cache", feature_set="mfcc"))


def test_a_cell_that_trains_from_scratch_says_so_on_the_console(tmp_path):
    import json
    from pathlib import Path

    from mattlib import runner
    from mattlib.runner import execute, schedule

    notebook = tmp_path / "notebook.ipynb"
    line = f"{tmp_path}/checkpoints/last.pt was saved by another run (epochs changed); training from scratch"
    outputs = [{"output_type": "stream", "name": "stderr", "text": ["epoch 1\n", line + "\n"]}]
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))
    assert execute._console_notes(notebook) == (line,)
    written = []

    class Bar:
        def set_postfix_str(self, _):
            pass

        def update(self):
            pass

        def write(self, text):
            written.append(text)

    cell = runner.Cell(notebook="04_mil.ipynb", cell_id="all-mlp-mean", params={}, output_dir=Path("x"))
    schedule._record(runner.CellResult(cell, "done", notes=(line,)), runner.RunSummary(run_dir=tmp_path), Bar())
    assert written == [f"04_mil/all-mlp-mean: {line}"]


def test_a_full_disk_names_the_folder_being_written(tmp_path, monkeypatch, capsys):
    import errno

    from mattlib import cli, features

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() raises it: no filename

    monkeypatch.setattr(features, "extract_audio_dir", full)
    out = tmp_path / "cache"
    import warnings

    before = warnings.formatwarning
    assert cli.main(["features", "--audio-dir", str(tmp_path), "--kind", "fma518", "--out", str(out)]) == 2
    assert warnings.formatwarning is before  # main() leaves the caller's warning format as it was
    assert capsys.readouterr().err.splitlines() == [
        f"matt features: error: No space left on device (writing under {out}) (free disk space (or point --out / "
        "output_root elsewhere) and run again)"
    ]


def test_bad_input_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    from mattlib import cli, features

    empty = tmp_path / "audio"
    empty.mkdir()
    argv = ["features", "--audio-dir", str(empty), "--kind", "fma518", "--out", str(tmp_path / "cache")]
    assert cli.main(argv) == 2  # a MattError (FeatureError): no mp3 to read
    assert capsys.readouterr().err.splitlines() == [
        f"matt features: error: no *.mp3 files with integer names below {empty}"
    ]

    def bug(*args, **kwargs):
        raise ValueError("a bug nobody planned for")

    monkeypatch.setattr(features, "extract_audio_dir", bug)
    with pytest.raises(ValueError, match="a bug nobody planned for"):
        cli.main(argv)


@pytest.mark.slow
def test_a_tracks_table_without_labelled_tracks_stops_before_any_cell(tiny_study, tmp_path):
    import pandas as pd

    root = tmp_path / "unlabelled"
    path = demo_copy(tiny_study["data_root"], root)
    tracks = pd.read_csv(path, index_col=0, header=[0, 1])
    tracks[("track", "genre_top")] = ""  # every genre_top empty
    tracks.to_csv(path)
    params = one_cell_params(tmp_path / "unlabelled.yaml", root=root, cache=tiny_study["cache_dir"])
    out = matt("run", str(params))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"matt run: error: data_root {root}: no labelled tracks in subset 'medium' (a track needs a top genre "
        "and a split); check its genre column (genre_top for FMA)"
    ]
    assert not (tmp_path / "out" / "unlabelled" / "03_baselines").exists()
