"""Nothing lost, nothing silent: what survives a failing re-run, Ctrl-C, SIGTERM, SIGKILL, two
writers at once, damaged inputs and caches. Real processes, signals and papermill runs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from mattlib import features, locks, runner
from mattlib.data import fma
from mattlib.features import audio, stats

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"


# -- helpers ---------------------------------------------------------------------------------------


def tiny_notebooks(folder: Path) -> Path:
    """A notebook that imports nothing heavy: it sleeps, then fails or writes metrics.json."""
    if (folder / "01_tiny.ipynb").exists():  # written once: its source digest must not change
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('data_root = "."\noutput_dir = "."\nsleep = 0.0\nfail = False\nvalue = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell(
            "import json, pathlib, time\n"
            "pathlib.Path(output_dir, 'started').write_text('')\n"
            "time.sleep(sleep)\n"
            "assert not fail, 'this cell was told to fail'\n"
            "pathlib.Path(output_dir, 'metrics.json').write_text(json.dumps({'value': value}))"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "01_tiny.ipynb")
    return folder


def tiny_spec(tmp_path: Path, *, run="tiny", output_root=None, **params) -> runner.GridSpec:
    spec = tmp_path / f"{run}.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "run": run,
                "output_root": str(output_root or tmp_path / "outputs"),
                "defaults": {"data_root": str(DATA)},
                "notebooks": [{"notebook": "01_tiny", "grid": {"value": [1, 2]}, "params": params}],
            }
        )
    )
    return runner.load_grid(spec, notebook_dir=tiny_notebooks(tmp_path / "notebooks"))


def metrics_of(spec: runner.GridSpec) -> dict:
    return {
        c.cell_id: json.loads((c.output_dir / "metrics.json").read_text())
        for c in spec.cells
        if (c.output_dir / "metrics.json").exists()
    }


def processes_with(token: str) -> list[int]:
    """Live processes whose environment holds ``token`` (a run's papermill, kernels, workers)."""
    found = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if token.encode() in env.read_bytes():
                state = (env.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(env.parent.name))
        except OSError:
            continue
    return found


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def matt_process(*args: str, token: str) -> subprocess.Popen:
    env = {**os.environ, "MATT_TEST_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mattlib.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- 1. a failing re-run never destroys a finished result -------------------------------------------


def test_a_failing_rerun_keeps_the_last_good_result(tmp_path):
    spec = tiny_spec(tmp_path)
    assert runner.run_grid(spec, progress=False, jobs=2).ok
    good = metrics_of(spec)
    assert good == {"1": {"value": 1}, "2": {"value": 2}}

    # an edited params file whose cells fail: the last good results stay, the attempts are named
    failing = tiny_spec(tmp_path, fail=True)
    summary = runner.run_grid(failing, progress=False, jobs=2)
    assert [r.status for r in summary.results] == ["failed", "failed"]
    assert metrics_of(failing) == good
    text = summary.describe()
    assert "2 cells stale (parameters changed: 2)" in text and "last good result kept" in text
    assert "this cell was told to fail" in text

    # a missing data root is refused once, before any cell starts
    broken = yaml.safe_load(failing.source.read_text())
    broken["defaults"]["data_root"] = str(tmp_path / "typo")
    failing.source.write_text(yaml.safe_dump(broken))
    with pytest.raises(runner.GridError, match="data root not found"):
        runner.run_grid(runner.load_grid(failing.source, notebook_dir=failing.notebook_dir), progress=False, force=True)
    assert metrics_of(spec) == good

    # a run folder that is moved still counts as finished
    shutil.copytree(spec.run_dir, tmp_path / "moved" / "tiny")
    moved = tiny_spec(tmp_path, output_root=tmp_path / "moved")
    assert [r.status for r in runner.run_grid(moved, progress=False, jobs=2).results] == ["skipped", "skipped"]

    # results made by other mattlib code are stale: counted and re-run
    (moved.cells[0].output_dir / "code.sha1").write_text("0" * 40 + "\n")
    summary = runner.run_grid(moved, progress=False, jobs=2)
    assert sorted(r.status for r in summary.results) == ["done", "skipped"]
    assert "1 cells stale (mattlib code changed: 1)" in summary.describe()


# -- 4. Ctrl-C, SIGTERM and SIGKILL on `matt run` (the real notebook 01 on real FMA rows) --------------


def real_grid(tmp_path: Path, cells: int = 3) -> Path:
    spec = tmp_path / "real.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "run": "real",
                "output_root": str(tmp_path / "outputs"),
                "defaults": {"data_root": str(DATA), "subset": "medium"},
                "notebooks": [{"notebook": "01_data_exploration", "grid": {"max_bag_size": list(range(cells))}}],
            }
        )
    )
    return spec


def first_cell_running(tmp_path: Path, token: str):
    attempts = tmp_path / "outputs" / "real" / ".attempts" / "01_data_exploration"
    # papermill and its kernel are up (3 processes: matt, papermill, kernel)
    return lambda: attempts.exists() and len(processes_with(token)) >= 3


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_one_interrupt_stops_matt_run(tmp_path, sig, status):
    token = uuid.uuid4().hex
    proc = matt_process("run", str(real_grid(tmp_path)), "--jobs", "1", token=token)
    try:
        wait_for(first_cell_running(tmp_path, token), 60, "the first cell to start")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    name = signal.Signals(sig).name
    assert f"INTERRUPTED by {name}: 1 stopped while running, 2 not started" in out, out + err
    assert "Traceback" not in err
    assert not list((tmp_path / "outputs" / "real").glob("01_data_exploration/*/metrics.json"))
    # only the cell that started has an attempt folder; the two that never started have none
    assert len(list((tmp_path / "outputs" / "real" / ".attempts" / "01_data_exploration").iterdir())) == 1
    wait_for(lambda: not processes_with(token), 10, "papermill and its kernel to exit")


def test_sigkilled_matt_run_leaves_no_process_behind(tmp_path):
    token = uuid.uuid4().hex
    proc = matt_process("run", str(real_grid(tmp_path, cells=1)), token=token)
    try:
        wait_for(first_cell_running(tmp_path, token), 60, "the cell to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    # papermill gets SIGTERM from the kernel when its parent dies; its kernel follows it
    wait_for(lambda: not processes_with(token), 15, "papermill and its kernel to exit")
    assert not (tmp_path / "outputs" / "real" / "01_data_exploration" / "0" / "metrics.json").exists()


def test_sigkilled_matt_features_leaves_no_worker_behind(tmp_path):
    token = uuid.uuid4().hex
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for i in range(40):  # enough work to still be running when killed
        shutil.copy(DATA / "fma_small" / "000" / "000002.mp3", audio_dir / f"{i + 1:06d}.mp3")
    proc = matt_process(
        "features",
        "--audio-dir",
        str(audio_dir),
        "--kind",
        "fma518",
        "--out",
        str(tmp_path / "cache"),
        "--jobs",
        "2",
        token=token,
    )
    try:
        wait_for(lambda: len(processes_with(token)) >= 3, 60, "two workers to start")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    wait_for(lambda: not processes_with(token), 20, "the workers to exit")


# -- 5. one writer per folder ----------------------------------------------------------------------


def test_one_writer_per_folder_and_a_dead_holder_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from mattlib.locks import folder_lock\n"
                f"with folder_lock({str(tmp_path)!r}, what='run folder'):\n"
                "    print('held', flush=True); time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.FolderLocked) as err, locks.folder_lock(tmp_path, what="run folder"):
            pass
        message = str(err.value)
        assert f"pid {holder.pid} on " in message and "started 20" in message and "\n" not in message
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        holder.kill()
    with locks.folder_lock(tmp_path, what="run folder"):  # the dead holder's lock is taken over
        assert str(os.getpid()) in (tmp_path / ".lock").read_text()


# -- 3. damaged inputs and caches are refused, with the file and the fix ------------------------------

CLIPS = {
    2: DATA / "fma_small" / "000" / "000002.mp3",
    5: DATA / "fma_small" / "000" / "000005.mp3",
    140: DATA / "fma_small" / "000" / "000140.mp3",
}
SHORT_MEL = features.MelSettings(sr=8000, seconds=2.0, n_mels=16, hop_length=256, n_fft=512)


def test_metadata_cut_mid_record_is_refused(tmp_path):
    meta = tmp_path / "fma_metadata"
    shutil.copytree(DATA / "fma_metadata", meta)
    text = (meta / "tracks.csv").read_bytes()
    (meta / "tracks.csv").write_bytes(text[: len(text) // 2])  # cut mid-row
    with pytest.raises(fma.FMADataError) as err:
        fma.load_tracks(tmp_path)
    assert "tracks.csv is cut short" in str(err.value) and str(meta / "tracks.csv") in str(err.value)
    with pytest.raises(runner.GridError, match="cut short"):
        runner.check_inputs([runner.Cell("01_x.ipynb", "a", {"data_root": str(tmp_path)}, tmp_path / "r" / "n" / "a")])
    # FMA's own genres.csv (starts at genre 1, is large) must hold all 163 rows
    lines = (DATA / "fma_metadata" / "genres.csv").read_text().splitlines(keepends=True)
    (meta / "genres.csv").write_text("".join(lines[:120]))
    with pytest.raises(fma.FMADataError, match="119 rows where FMA's genres.csv has 163"):
        fma.load_genres(tmp_path)
    # a root the project generated in FMA's format (the FMA-medium-shaped benchmark data) is not FMA's
    (tmp_path / fma.GENERATED_MARKER).write_text("{}")
    assert len(fma.load_genres(tmp_path)) == 119


def test_a_clip_shorter_than_one_frame_is_flagged_padded_for_fma518(tmp_path):
    import soundfile as sf

    blip = tmp_path / "000009.wav"
    sf.write(blip, np.sin(np.arange(1500) / 5.0).astype(np.float32), 22050)  # 68 ms < 2048 samples
    report = features.extract({2: CLIPS[2], 9: blip}, kind="fma518", out=tmp_path / "cache", progress=False)
    assert (report.done, report.padded) == (2, 1)
    assert (tmp_path / "cache" / "fma518" / "padded.csv").read_text().split() == ["track_id", "9"]


def test_random_bytes_are_not_an_audio_file(tmp_path):
    fake = tmp_path / "000001.mp3"
    fake.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(audio.AudioError, match="not an audio file"):
        audio.load_audio(fake, sr=None)


def test_a_damaged_mel_cache_is_refused_and_repaired(tmp_path):
    cache = tmp_path / "cache"
    features.extract(CLIPS, kind="mel", out=cache, settings=SHORT_MEL, progress=False)
    folder = features.mel_dir(cache, SHORT_MEL)
    good = np.array(features.load_mel(folder).mel)

    mel = np.load(folder / "mel.npy", mmap_mode="r+")
    mel[1] = 0  # zeroed row inside mel.npy
    mel.flush()
    del mel
    with pytest.raises(features.DamagedCacheError, match="1 rows differ|3 rows differ") as err:
        features.load_mel(folder)
    assert "mel.npy" in str(err.value) and "--repair" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(features.DamagedCacheError):  # extraction refuses to build on it, too
        features.extract(CLIPS, kind="mel", out=cache, settings=SHORT_MEL, progress=False)
    report = features.extract(CLIPS, kind="mel", out=cache, settings=SHORT_MEL, progress=False, repair=True)
    assert report.done == 3  # the damaged part (here: every row) re-extracted
    np.testing.assert_array_equal(np.array(features.load_mel(folder).mel), good)

    index = (folder / "index.csv").read_text()
    (folder / "index.csv").write_text(index[: len(index) // 2])  # index cut in half
    with pytest.raises(features.DamagedCacheError, match="index.csv: damaged"):
        features.load_mel(folder)
    (folder / "index.csv").write_text(index)
    with open(folder / "mel.npy", "r+b") as handle:  # mel.npy cut short
        handle.truncate((folder / "mel.npy").stat().st_size - 100)
    with pytest.raises(features.DamagedCacheError, match="mel.npy: cut short or replaced"):
        features.load_mel(folder)


def test_a_cut_fma518_table_is_refused_and_an_undefined_row_is_a_failure(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    nan_clip = tmp_path / "000007.mp3"
    shutil.copy(CLIPS[2], nan_clip)
    real = features.compute_fma518

    def undefined_for_7(path, **kwargs):
        values = real(path, **kwargs)
        return values * np.nan if Path(path) == nan_clip else values

    monkeypatch.setattr(stats, "compute_fma518", undefined_for_7)  # what the fma518 kind's clip function calls
    report = features.extract({2: CLIPS[2], 7: nan_clip}, kind="fma518", out=cache, progress=False)
    assert (report.done, report.failed) == (1, 1)
    assert "no finite feature value" in (cache / "fma518" / "failures.csv").read_text()
    with pytest.warns(UserWarning, match="1 of 2 tracks failed"):
        assert list(features.load_fma518(cache).index) == [2]

    csv = cache / "fma518" / "features.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-1]) + "2,1.0\n")  # a cut row
    with pytest.raises(features.DamagedCacheError, match="features.csv: damaged"):
        features.load_fma518(cache)


# -- 6. disk and path errors are one line at the CLI; a held run folder is named -------------------


def test_os_errors_and_a_busy_run_folder_are_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = subprocess.run(
        [sys.executable, "-m", "mattlib.cli", "demo-data", "--out", str(blocker / "demo")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("matt demo-data: error: Not a directory") and str(blocker) in line

    spec = real_grid(tmp_path, cells=1)
    with locks.folder_lock(tmp_path / "outputs" / "real", what="run folder"):
        out = subprocess.run(
            [sys.executable, "-m", "mattlib.cli", "run", str(spec)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=False,
        )
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert f"run folder {tmp_path / 'outputs' / 'real'} is in use by pid {os.getpid()}" in line
