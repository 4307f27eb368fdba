"""Decoding of the FMA clips: mattlib.features.audio."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mattlib.features.audio import AudioError, audio_info, load_audio

DATA = Path(__file__).parent / "data"
CLIP2 = DATA / "fma_small" / "000" / "000002.mp3"
CLIP5 = DATA / "fma_small" / "000" / "000005.mp3"


def test_native_rate_mono_and_stereo():
    y, sr = load_audio(CLIP2, sr=None)
    assert sr == 44100
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.shape[0] == 1321967  # 29.98 s, as libsndfile/mpg123 decodes it
    assert 0.01 < np.abs(y).max() <= 1.0
    ys, sr2 = load_audio(CLIP2, sr=None, mono=False)
    assert sr2 == 44100 and ys.shape == (2, 1321967)
    np.testing.assert_allclose(ys.mean(axis=0), y, atol=1e-7)


def test_resampling_matches_librosa_load():
    import librosa

    y, sr = load_audio(CLIP5, sr=12000)
    ref, _ = librosa.load(CLIP5, sr=12000)
    assert sr == 12000 and y.shape == ref.shape == (360033,)
    np.testing.assert_array_equal(y, ref)
    y, _ = load_audio(CLIP5, sr=12000, offset=1.5, duration=29.0)
    ref, _ = librosa.load(CLIP5, sr=12000, offset=1.5, duration=29.0)
    assert y.shape == ref.shape
    np.testing.assert_array_equal(y, ref)


def test_offset_and_duration():
    y, sr = load_audio(CLIP2, sr=None, offset=1.0, duration=2.0)
    assert y.shape == (88200,)
    full, _ = load_audio(CLIP2, sr=None)
    # mp3 seeking is sample-accurate in mpg123
    np.testing.assert_allclose(y, full[44100 : 44100 + 88200], atol=1e-6)


def test_info():
    info = audio_info(CLIP2)
    assert info["samplerate"] == 44100 and info["channels"] == 2
    assert info["duration"] == pytest.approx(29.977, abs=0.01)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.mp3"
    with pytest.raises(AudioError, match="file not found") as e:
        load_audio(p, sr=None)
    assert str(p) in str(e.value) and e.value.path == str(p)
    assert isinstance(e.value, RuntimeError)


def test_empty_file(tmp_path):
    p = tmp_path / "000001.mp3"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty file \(0 bytes\)"):
        load_audio(p, sr=None)


def test_truncated_file(tmp_path):
    p = tmp_path / "000002.mp3"
    data = CLIP2.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated: decoded") as e:
        load_audio(p, sr=12000)
    assert str(p) in str(e.value)


def test_undecodable_file(tmp_path):
    p = tmp_path / "junk.mp3"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="undecodable"):
        load_audio(p, sr=None)


def test_short_mp3_written_by_soundfile(tmp_path):
    p = tmp_path / "short.mp3"
    t = np.arange(22050 * 2) / 22050
    sf.write(p, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050, format="MP3")
    y, sr = load_audio(p, sr=12000)
    assert sr == 12000
    assert abs(y.shape[0] - 24000) < 1500  # ~2 s (encoder delay/padding)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="sr must be"):
        load_audio(CLIP2, sr=0)
    with pytest.raises(ValueError, match="offset"):
        load_audio(CLIP2, sr=None, offset=-1.0)
    with pytest.raises(ValueError, match="duration"):
        load_audio(CLIP2, sr=None, duration=0)


def test_error_pickles():
    e = pickle.loads(pickle.dumps(AudioError("/x/y.mp3", "empty file (0 bytes)")))
    assert e.path == "/x/y.mp3" and e.reason == "empty file (0 bytes)"
    assert "/x/y.mp3" in str(e)
