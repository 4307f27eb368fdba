"""musicnn: the torch port against the original TensorFlow graph's outputs (tests/data/musicnn/),
the checkpoint reader, bad input, and the ``musicnn`` feature kind through the bulk extractor."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if importlib.util.find_spec("musicnn") is None:
    pytest.skip(
        "musicnn not installed (its wheel ships the weights): pip install --no-deps musicnn==0.1.0 (make venv does it)",
        allow_module_level=True,
    )

from mattlib import features
from mattlib.features import musicnn, musicnn_net
from mattlib.features.audio import AudioError
from mattlib.features.musicnn_checkpoint import CheckpointError, checkpoint_entries, read_checkpoint

DATA = Path(__file__).parent / "data"
CLIPS = sorted((DATA / "fma_small").glob("*/*.mp3"))


def _reference(model):
    with np.load(DATA / "musicnn" / f"{model}.npz") as z:
        ref = {k: z[k] for k in z.files}
    starts = np.concatenate([[0], np.cumsum(ref["n_patches"])])
    return ref, {int(t): slice(starts[i], starts[i + 1]) for i, t in enumerate(ref["track_id"])}


def _assert_equal_to_reference(out, ref, rows, what):
    """Tags within 1e-4; embeddings within 1e-3 of the vector's scale; the same top tag."""
    np.testing.assert_allclose(out["taggram"], ref["taggram"][rows], rtol=0, atol=1e-4, err_msg=what)
    for key in ("penultimate", "mean_pool", "max_pool"):
        want = ref[key][rows]
        scale = np.abs(want).max()
        assert scale > 0, what
        np.testing.assert_allclose(out[key], want, rtol=1e-3, atol=1e-3 * scale, err_msg=f"{what} {key}")
    assert out["taggram"].mean(0).argmax() == ref["taggram"][rows].mean(0).argmax(), what


def test_embed_file_equals_the_original_graph_on_a_real_clip():
    ref, rows = _reference("MSD_musicnn")
    out = musicnn.embed_file(CLIPS[0], model="MSD_musicnn")
    assert set(out) == {"taggram", "penultimate", "mean_pool", "max_pool", "tags"}
    assert out["penultimate"].shape == (10, 200) and out["mean_pool"].shape == (10, 753)
    assert list(out["tags"]) == list(musicnn.MSD_TAGS)
    _assert_equal_to_reference(out, ref, rows[int(CLIPS[0].stem)], CLIPS[0].name)
    # fix 2: every patch has its own penultimate (the original repeats the first)
    assert not np.allclose(out["penultimate"][0], out["penultimate"][1])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["MSD_musicnn", "MTT_musicnn"])
def test_every_real_clip_equals_the_original_graph(model):
    ref, rows = _reference(model)
    assert sorted(rows) == [int(p.stem) for p in CLIPS]
    for path in CLIPS:
        _assert_equal_to_reference(musicnn.embed_file(path, model=model), ref, rows[int(path.stem)], path.name)


def test_the_reader_reads_the_wheels_checkpoint():
    prefix = musicnn_net.checkpoint_prefix("MTT_musicnn")
    entries = checkpoint_entries(prefix + ".index")
    assert entries["conv2d/kernel"]["shape"] == (7, 38, 1, 204)
    assert entries["dense_1/kernel"]["shape"] == (200, 50)
    w = read_checkpoint(prefix, names=["batch_normalization_9/moving_variance"])
    v = w["batch_normalization_9/moving_variance"]
    assert v.shape == (1506,) and v.dtype == np.float32 and (v > 0).all()


def _copied_package(tmp_path, monkeypatch):
    """A copy of the installed musicnn package first on sys.path (the loader's cache cleared)."""
    src = Path(musicnn_net.checkpoint_prefix("MSD_musicnn"))
    dst = tmp_path / "site" / "musicnn"
    shutil.copytree(src, dst / "MSD_musicnn")
    (dst / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    musicnn_net._load_cpu.cache_clear()
    assert musicnn_net.checkpoint_prefix("MSD_musicnn") == str(dst / "MSD_musicnn") + "/"
    return dst / "MSD_musicnn"


def test_a_damaged_or_missing_checkpoint_is_one_line(tmp_path, monkeypatch):
    folder = _copied_package(tmp_path, monkeypatch)
    try:
        data = folder / ".data-00000-of-00001"
        raw = bytearray(data.read_bytes())
        raw[1000] ^= 0xFF
        data.write_bytes(bytes(raw))
        with pytest.raises(CheckpointError, match=r"damaged \(SHA-256.*force-reinstall musicnn==0\.1\.0"):
            musicnn_net.load_musicnn("MSD_musicnn")
        data.unlink()
        with pytest.raises(CheckpointError, match=r"cannot read the MSD_musicnn checkpoint"):
            musicnn_net.load_musicnn("MSD_musicnn")
    finally:
        musicnn_net._load_cpu.cache_clear()


def test_the_reader_checks_the_index_blocks(tmp_path):
    index = Path(musicnn_net.checkpoint_prefix("MSD_musicnn") + ".index")
    raw = bytearray(index.read_bytes())
    damaged = tmp_path / "damaged.index"
    raw[100] ^= 0x01
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint_entries(damaged)
    cut = tmp_path / "cut.index"
    cut.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="cut or damaged"):
        checkpoint_entries(cut)


def test_musicnn_not_installed_is_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "musicnn" else real(name, *a))
    with pytest.raises(musicnn_net.MusicnnNotInstalled, match=r"not installed: pip install --no-deps musicnn"):
        musicnn_net.checkpoint_prefix("MSD_musicnn")


def _wav(path, y, sr=16000):
    import soundfile as sf

    sf.write(str(path), y.astype(np.float32), sr)
    return path


def test_short_and_silent_audio_are_one_line(tmp_path):
    short = _wav(tmp_path / "short.wav", 0.1 * np.random.default_rng(0).standard_normal(16000 * 2))
    with pytest.raises(AudioError, match=r"too short for musicnn: 2\.00 s, one patch needs 2\.976 s"):
        musicnn.embed_file(short)
    silent = _wav(tmp_path / "silent.wav", np.zeros(16000 * 4))
    with pytest.raises(AudioError, match="silent"):
        musicnn.embed_file(silent)
    with pytest.raises(ValueError, match="unknown musicnn model 'MSD'; valid: MSD_musicnn, MTT_musicnn"):
        musicnn.embed_file(short, model="MSD")


def test_settings_shape_and_id():
    s = musicnn.MusicnnSettings()
    assert s.shape == (10, 200) and s.settings_id == "MSD_musicnn-penultimate-30s"
    assert musicnn.MusicnnSettings(vector="max_pool", seconds=3).shape == (1, 753)
    with pytest.raises(ValueError, match="unknown musicnn vector"):
        musicnn.MusicnnSettings(vector="cnn1")
    with pytest.raises(ValueError, match="one 3 s patch"):
        musicnn.MusicnnSettings(seconds=2)


@pytest.mark.slow
def test_the_feature_kind_writes_the_reference_values_and_lists_failures(tmp_path):
    ref, rows = _reference("MSD_musicnn")
    tracks = {int(p.stem): p for p in CLIPS[:4]}
    tracks[999] = _wav(tmp_path / "999.wav", np.zeros(16000 * 4))  # silent: a listed failure
    settings = musicnn.MusicnnSettings(vector="taggram")
    report = features.extract(tracks, kind="musicnn", out=tmp_path / "cache", jobs=2, settings=settings, progress=False)
    assert (report.done, report.failed) == (4, 1)
    failures = pd.read_csv(Path(report.paths["folder"]) / "failures.csv")
    assert failures["track_id"].tolist() == [999] and "silent" in failures["error"].iat[0]
    with pytest.warns(UserWarning, match="1 of 5 tracks failed"):
        ids, values = musicnn.load_musicnn_features(tmp_path / "cache", settings, pool=None)
    assert ids.tolist() == sorted(tracks)[:4] and values.dtype == np.float32
    for tid, v in zip(ids, values):
        np.testing.assert_allclose(v, ref["taggram"][rows[tid]], rtol=0, atol=1e-4)
    # resumed: nothing recomputed
    again = features.extract(tracks, kind="musicnn", out=tmp_path / "cache", jobs=1, settings=settings, progress=False)
    assert (again.done, again.reused) == (0, 4)
    with pytest.warns(UserWarning, match="1 of 5 tracks failed"):
        pooled = musicnn.load_musicnn_features(tmp_path / "cache", settings)
    assert pooled.shape == (4, 50) and pooled.index.name == "track_id"


def test_the_filterbank_is_librosas_bit_for_bit():
    import librosa

    assert np.array_equal(musicnn._filterbank(), librosa.filters.mel(sr=16000, n_fft=512, n_mels=96))
