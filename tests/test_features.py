"""Features: FMA's 518 statistics, log-mel spectrograms, bulk extraction (mattlib.features)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mattlib import features as F
from mattlib.features import mel as feature_mel
from mattlib.features import stats as feature_stats
from mattlib.features.audio import load_audio

DATA = Path(__file__).parent / "data"
CLIPS = DATA / "fma_small" / "000"
CLIP2, CLIP5, CLIP140 = (CLIPS / f"{t:06d}.mp3" for t in (2, 5, 140))
REFERENCE = DATA / "reference" / "features_prefixes_tracks2_5.csv"
LOCATION = ("mean", "std", "median", "max")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_csv(REFERENCE, index_col=0, header=[0, 1, 2])


@pytest.fixture(scope="module")
def ours() -> dict[int, pd.Series]:
    return {2: F.compute_fma518(CLIP2), 5: F.compute_fma518(CLIP5)}


def stat_errors(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Relative L2 error of each statistic's vector (e.g. the 20 MFCC means)."""
    out = {}
    for stat in F.FMA_STATISTICS:
        x = a[stat].to_numpy(np.float64)
        y = b[stat].reindex(a[stat].index).to_numpy(np.float64)
        out[stat] = float(np.linalg.norm(x - y) / np.linalg.norm(y))
    return out


# Tolerances per group: (mean/std/median/max, min, skew/kurtosis).  Groups computed from the STFT
# agree to ~1e-4 (mp3 decoding and float32 rounding); the CQT-based groups differ more (librosa's
# CQT changed since the reference was computed).  A swapped pair of statistics or a wrong hop
# breaks these bounds (checked below).
TOLERANCES = {
    "zcr": (2e-3, 2e-3, 2e-2),
    "rmse": (2e-3, 2e-3, 2e-2),
    "mfcc": (2e-3, 2e-3, 2e-2),
    "chroma_stft": (2e-3, 2e-3, 2e-2),
    "spectral_centroid": (2e-3, 2e-3, 2e-2),
    "spectral_rolloff": (2e-3, 2e-3, 2e-2),
    "spectral_bandwidth": (6e-3, 6e-3, 6e-2),
    "chroma_cqt": (3e-2, 0.1, 0.15),
    "chroma_cens": (3e-2, 0.1, 0.15),
    "tonnetz": (6e-2, 0.15, 0.15),
}


def group_ok(group: str, a: pd.Series, b: pd.Series) -> bool:
    loc, mn, shape = TOLERANCES[group]
    e = stat_errors(a, b)
    return max(e[s] for s in LOCATION) < loc and e["min"] < mn and max(e["skew"], e["kurtosis"]) < shape


# --- the 518 columns ------------------------------------------------------------------------


def test_columns_equal_reference_header(reference):
    cols = F.fma518_columns()
    assert len(cols) == 518
    assert cols.equals(reference.columns)
    assert list(cols.names) == ["feature", "statistics", "number"]
    assert cols[0] == ("chroma_cens", "kurtosis", "01") and cols[-1] == ("zcr", "std", "01")
    sizes = cols.get_level_values(0).value_counts()
    assert sizes["mfcc"] == 140 and sizes["spectral_contrast"] == 49 and sizes["tonnetz"] == 42


@pytest.mark.parametrize("tid", [2, 5])
def test_values_close_to_fma_reference(reference, ours, tid):
    s, ref = ours[tid], reference.loc[f"{tid:06d}-30"]
    assert s.shape == (518,) and s.dtype == np.float32 and s.index.equals(reference.columns)
    assert np.isfinite(s.to_numpy()).all()
    for group in TOLERANCES:
        assert group_ok(group, s[group], ref[group]), (group, stat_errors(s[group], ref[group]))
    # spectral contrast: bands 1-6 tight; the top band (7) differs by ~10-30 %: librosa changed
    # how the last band reaches Nyquist after the reference was computed
    con, rcon = s["spectral_contrast"], ref["spectral_contrast"]
    low = [f"{i:02d}" for i in range(1, 7)]
    e_low = stat_errors(con.loc[(slice(None), low)], rcon.loc[(slice(None), low)])
    assert max(e_low[k] for k in LOCATION) < 2e-2, e_low
    top = con.xs("07", level="number").to_numpy(float)
    rtop = rcon.xs("07", level="number").reindex(con.xs("07", level="number").index).to_numpy(float)
    assert np.corrcoef(top, rtop)[0, 1] > 0.95


def test_tolerances_catch_swapped_statistics_and_wrong_hop(reference, ours):
    import librosa

    s, ref = ours[2], reference.loc["000002-30"]
    for group in TOLERANCES:
        swapped = s[group].copy()
        swapped["mean"], swapped["median"] = s[group]["median"].to_numpy(), s[group]["mean"].to_numpy()
        assert not group_ok(group, swapped, ref[group]), f"mean<->median swap not caught in {group}"
        swapped = s[group].copy()
        swapped["skew"], swapped["kurtosis"] = s[group]["kurtosis"].to_numpy(), s[group]["skew"].to_numpy()
        assert not group_ok(group, swapped, ref[group]), f"skew<->kurtosis swap not caught in {group}"
    # the same MFCC/rms code with hop 256 or 1024 instead of 512 falls outside the tolerances
    y, sr = load_audio(CLIP2, sr=None)
    for hop in (256, 1024):
        S = np.abs(librosa.stft(y, n_fft=2048, hop_length=hop, pad_mode="reflect"))
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=S**2, sr=sr)), n_mfcc=20)
        for name, x in (("mfcc", mfcc), ("rmse", librosa.feature.rms(S=S))):
            st = feature_stats._summary(x)
            vec = pd.Series({(k, f"{i + 1:02d}"): v[i] for k, v in st.items() for i in range(len(v))})
            assert not group_ok(name, vec, ref[name]), (hop, name)


def test_summary_statistics_match_numpy_scipy():
    from scipy import stats

    x = np.random.default_rng(0).gamma(2.0, size=(3, 500)).astype(np.float32)
    st = feature_stats._summary(x)
    np.testing.assert_allclose(st["mean"], x.mean(1), rtol=1e-6)
    np.testing.assert_allclose(st["std"], x.std(1), rtol=1e-5)
    np.testing.assert_allclose(st["skew"], stats.skew(x.astype(float), axis=1), rtol=1e-9)
    np.testing.assert_allclose(st["kurtosis"], stats.kurtosis(x.astype(float), axis=1), rtol=1e-9)
    np.testing.assert_allclose(st["median"], np.median(x, 1))
    assert np.isnan(feature_stats._summary(np.ones((1, 10)))["skew"]).all()


def test_fast_helpers_equal_librosa():
    import librosa

    y, sr = load_audio(CLIP140, sr=None)
    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512, pad_mode="reflect"))
    S[:, 5] = 0.0  # a silent frame
    c, b, r = feature_stats._spectral_shape(S, sr=22050, n_fft=2048)
    np.testing.assert_allclose(c, librosa.feature.spectral_centroid(S=S), rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(b, librosa.feature.spectral_bandwidth(S=S), rtol=1e-5, atol=1e-2)
    np.testing.assert_array_equal(r, librosa.feature.spectral_rolloff(S=S))
    S0 = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
    assert feature_stats._estimate_tuning(S0, sr=sr, n_fft=2048) == librosa.estimate_tuning(
        y=y, sr=sr, bins_per_octave=12
    )
    P = S * S
    assert feature_stats._estimate_tuning(P, sr=22050, n_fft=2048) == librosa.estimate_tuning(S=P, sr=22050, n_fft=2048)


# --- feature sets ----------------------------------------------------------------------------


def test_feature_sets(reference):
    dims = {
        "chroma": 84, "tonnetz": 42, "mfcc": 140, "spectral_centroid": 7, "spectral_bandwidth": 7,
        "spectral_contrast": 49, "spectral_rolloff": 7, "rms_energy": 7, "zero_crossing": 7,
        "mfcc+contrast": 189, "mfcc+contrast+centroid": 196, "all": 518, "all (1-9)": 518,
    }  # fmt: skip
    for name, d in dims.items():
        assert F.feature_set_dim(name) == d
        sel = F.select_feature_set(reference, name)
        assert sel.shape == (len(reference), d)
    assert set(F.select_feature_set(reference, "chroma").columns.get_level_values(0)) == {"chroma_cens"}
    assert F.select_feature_set(reference, "all").columns.equals(reference.columns)
    np.testing.assert_array_equal(
        F.select_feature_set(reference, "rms_energy").to_numpy(), reference["rmse"].to_numpy()
    )


def test_unknown_feature_set_lists_valid_names(reference):
    with pytest.raises(ValueError, match="unknown feature set 'timbre'.*mfcc\\+contrast.*all"):
        F.select_feature_set(reference, "timbre")
    with pytest.raises(ValueError, match="valid"):
        F.feature_set_dim("chromagram")
    with pytest.raises(ValueError, match="missing from the table"):
        F.select_feature_set(reference[["mfcc"]], "mfcc+contrast")


# --- log-mel -----------------------------------------------------------------------------------


def test_mel_settings():
    s = F.MelSettings()
    assert s.shape == (96, 1360) and s.n_samples == 348000
    assert s.settings_id == "sr12000-n96-hop256-fft512-29s-start"
    assert F.MelSettings(crop="center").crop == "centre"
    assert F.MelSettings(fmax=5000.0).settings_id != s.settings_id
    assert F.MelSettings(top_db=None).settings_id != s.settings_id
    with pytest.raises(ValueError, match="crop"):
        F.MelSettings(crop="middle")
    with pytest.raises(ValueError, match="n_mels"):
        F.MelSettings(n_mels=0)


def test_mel_shape_and_values_paper_settings():
    m, padded = F.compute_mel(CLIP2)
    assert m.shape == (96, 1360) and m.dtype == np.float32 and not padded
    assert np.isfinite(m).all()
    assert -60 < m.max() < 40  # dB re power 1.0
    assert m.min() == pytest.approx(m.max() - 80.0, abs=1e-3)  # top_db floor
    mc, _ = F.compute_mel(CLIP2, F.MelSettings(crop="centre"))
    assert mc.shape == (96, 1360) and not np.allclose(mc, m)


def test_torch_mel_equals_librosa():
    import torch

    s = F.MelSettings()
    ys = np.stack([F.mel_audio(CLIP2, s)[0], F.mel_audio(CLIP5, s)[0]])
    ref = np.stack([F.log_mel_librosa(y, s) for y in ys])
    out = F.log_mel_torch(ys, s, device="cpu").numpy()
    assert out.shape == ref.shape == (2, 96, 1360)
    assert np.abs(out - ref).max() < 1e-3
    single = F.log_mel_torch(torch.as_tensor(ys[0]), s, device="cpu")
    assert tuple(single.shape) == (96, 1360)
    # also with no dB floor, where tiny powers matter most
    s2 = F.MelSettings(top_db=None, seconds=5.0)
    y = ys[0][: s2.n_samples]
    assert np.abs(F.log_mel_torch(y, s2, device="cpu").numpy() - F.log_mel_librosa(y, s2)).max() < 1e-3


def test_numpy_mel_equals_librosa():
    s = F.MelSettings()
    for clip in (CLIP5, CLIP140):
        y, _ = F.mel_audio(clip, s)
        ours, ref = F.log_mel(y, s), F.log_mel_librosa(y, s)
        assert ours.shape == ref.shape == (96, 1360) and ours.dtype == np.float32
        assert np.abs(ours - ref).max() < 1e-3
    # and librosa.load + librosa's mel on the same clip: the whole pipeline equals the plain way
    import librosa

    y, sr = librosa.load(CLIP2, sr=12000, duration=29.0)
    ref = F.log_mel_librosa(y[:348000], s)
    assert np.abs(F.compute_mel(CLIP2)[0] - ref).max() < 1e-3


# --- bulk extraction -----------------------------------------------------------------------


def _faulty_tracks(tmp_path: Path) -> dict[int, Path]:
    """Real clips 2 and 5, plus: 10 empty, 11 truncated, 12 missing, 13 short (3 s)."""
    d = tmp_path / "audio"
    d.mkdir()
    tracks = {2: d / "000002.mp3", 5: d / "000005.mp3"}
    shutil.copy(CLIP2, tracks[2])
    shutil.copy(CLIP5, tracks[5])
    (d / "000010.mp3").write_bytes(b"")
    data = CLIP140.read_bytes()
    (d / "000011.mp3").write_bytes(data[: len(data) // 3])
    t = np.arange(3 * 22050) / 22050
    sf.write(d / "000013.mp3", (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050, format="MP3")
    tracks.update({10: d / "000010.mp3", 11: d / "000011.mp3", 12: d / "000012.mp3", 13: d / "000013.mp3"})
    return tracks


def test_unknown_kind_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown feature kind 'mfcc'; valid kinds: fma518, mel"):
        F.extract({2: CLIP2}, kind="mfcc", out=tmp_path)
    with pytest.raises(ValueError, match="jobs"):
        F.extract({2: CLIP2}, kind="mel", out=tmp_path, jobs=0)
    with pytest.raises(ValueError, match="non-negative"):
        F.extract({-1: CLIP2}, kind="mel", out=tmp_path)
    with pytest.raises(ValueError, match="valid kinds"):
        F.extract_audio_dir(CLIPS, kind="cqt", out=tmp_path)


def test_extract_mel_faulty_clips(tmp_path):
    tracks = _faulty_tracks(tmp_path)
    rep = F.extract(tracks, kind="mel", out=tmp_path / "cache", progress=False)
    assert (rep.n_tracks, rep.done, rep.reused, rep.failed, rep.padded) == (6, 3, 0, 3, 1)
    folder = tmp_path / "cache" / "mel-sr12000-n96-hop256-fft512-29s-start"
    fail = pd.read_csv(folder / "failures.csv")
    assert fail["track_id"].tolist() == [10, 11, 12]
    errors = dict(zip(fail["track_id"], fail["error"]))
    assert "empty file" in errors[10] and "truncated" in errors[11] and "not found" in errors[12]
    assert fail["path"].tolist() == [str(tracks[t]) for t in (10, 11, 12)]
    index = pd.read_csv(folder / "index.csv")
    assert index["track_id"].tolist() == [2, 5, 10, 11, 12, 13]
    assert index.set_index("track_id").loc[13, "padded"] and not index.set_index("track_id").loc[2, "padded"]
    with pytest.warns(UserWarning, match="3 of 6 tracks failed"):
        store = F.load_mel(folder)
    assert isinstance(store.mel, np.memmap) and store.mel.dtype == np.float16
    assert store.mel.shape == (6, 96, 1360) and len(store) == 3
    assert store.track_ids.tolist() == [2, 5, 13] and store.padded.tolist() == [False, False, True]
    np.testing.assert_allclose(store.get(5).astype(np.float32), F.compute_mel(CLIP5)[0], atol=0.05)
    short = store.get(13).astype(np.float32)
    assert short[:, -100:].max() == pytest.approx(short.max() - 80, abs=0.1)  # zero-padded tail at the floor
    assert json.loads((folder / "report.json").read_text())["failed"] == 3


def test_extract_fma518_faulty_clips_and_fma_layout(tmp_path):
    from mattlib.data import fma

    tracks = _faulty_tracks(tmp_path)
    del tracks[5]  # keep the test short: one full clip and the short one
    rep = F.extract(tracks, kind="fma518", out=tmp_path / "cache", progress=False)
    assert (rep.done, rep.failed, rep.reused) == (2, 3, 0)
    folder = tmp_path / "cache" / "fma518"
    fail = pd.read_csv(folder / "failures.csv")
    assert fail["track_id"].tolist() == [10, 11, 12]
    # FMA's layout: readable by the FMA loader, 3 header rows, same columns as FMA's file
    head = (folder / "features.csv").read_text().splitlines()[:4]
    assert head[0].startswith("feature,chroma_cens") and head[1].startswith("statistics,kurtosis")
    assert head[2].startswith("number,01,02") and head[3].startswith("track_id")
    table = fma.load_features(folder / "features.csv")
    assert table.shape == (2, 518) and table.index.tolist() == [2, 13]
    assert table.columns.equals(F.fma518_columns())
    # The worker computed these float32 statistics in another process, where FFT / BLAS may sum
    # in another order: sums over ~1,300 frames drift by up to ~n * eps32 (1e-4 relative) and
    # values near zero (skew, kurtosis) need an absolute floor. Seen: 1.3e-6 on one machine.
    np.testing.assert_allclose(table.loc[2].to_numpy(), F.compute_fma518(CLIP2).to_numpy(), rtol=1e-4, atol=1e-5)
    pq = pd.read_parquet(folder / "features.parquet")
    np.testing.assert_allclose(pq.to_numpy(), table.to_numpy(), rtol=1e-6)
    with pytest.warns(UserWarning, match="3 of 5 tracks failed"):
        loaded = F.load_fma518(tmp_path / "cache")
    assert loaded.columns.equals(F.fma518_columns()) and loaded.index.name == "track_id"
    assert not (folder / "parts").exists() or not list((folder / "parts").iterdir())


class _Killed(BaseException):
    """Stands for SIGKILL/KeyboardInterrupt: not an Exception, so no worker catches it."""


def test_resume_fma518_does_not_recompute(tmp_path, monkeypatch):
    calls: list[str] = []

    def fake(path, *, legacy=False):
        calls.append(Path(path).stem)
        if len(calls) == 4:
            raise _Killed()
        return pd.Series(np.full(518, float(Path(path).stem), np.float32), index=F.fma518_columns())

    # the fma518 kind's per-clip function calls it; jobs=1 extracts in this process, where the patch is
    monkeypatch.setattr(feature_stats, "compute_fma518", fake)
    tracks = {t: CLIP2.with_name(f"{t:06d}.mp3") for t in range(1, 7)}
    with pytest.raises(_Killed):
        F.extract(tracks, kind="fma518", out=tmp_path, jobs=1, progress=False, chunk_size=1)
    assert calls == ["000001", "000002", "000003", "000004"]
    assert len(list((tmp_path / "fma518" / "parts").glob("part-*.npz"))) == 3
    assert not (tmp_path / "fma518" / "features.csv").exists()  # nothing looks finished
    calls.clear()
    rep = F.extract(tracks, kind="fma518", out=tmp_path, jobs=1, progress=False, chunk_size=1)
    assert calls == ["000004", "000005", "000006"]
    assert (rep.done, rep.reused, rep.failed) == (3, 3, 0)
    table = F.load_fma518(tmp_path)
    assert table.index.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(table[("mfcc", "mean", "01")].to_numpy(), np.arange(1, 7))
    # a third run computes nothing
    calls.clear()
    rep = F.extract(tracks, kind="fma518", out=tmp_path, jobs=1, progress=False)
    assert calls == [] and rep.reused == 6


def test_resume_mel_does_not_recompute(tmp_path, monkeypatch):
    real_log_mel = F.log_mel
    calls: list[int] = []
    kill_at = [3]

    def counting(y, settings):
        calls.append(1)
        if len(calls) == kill_at[0]:
            raise _Killed()
        return real_log_mel(y, settings)

    monkeypatch.setattr(feature_mel, "log_mel", counting)  # the mel kind's per-clip function calls it
    s = F.MelSettings(seconds=5.0)
    tracks = {t: [CLIP2, CLIP5, CLIP140][t % 3] for t in range(1, 6)}
    with pytest.raises(_Killed):
        F.extract(tracks, kind="mel", out=tmp_path, settings=s, jobs=1, progress=False, chunk_size=1)
    folder = F.mel_dir(tmp_path, s)
    assert not (folder / "index.csv").exists()
    with pytest.raises(FileNotFoundError, match="no complete mel extraction"):
        F.load_mel(folder)
    assert len((folder / "progress.csv").read_text().splitlines()) == 2
    mtime = (folder / "mel.npy").stat().st_mtime_ns
    calls.clear()
    kill_at[0] = 0
    rep = F.extract(tracks, kind="mel", out=tmp_path, settings=s, jobs=1, progress=False, chunk_size=1)
    assert len(calls) == 3 and (rep.done, rep.reused) == (3, 2)
    assert (folder / "mel.npy").stat().st_mtime_ns >= mtime
    store = F.load_mel(tmp_path, settings=s)
    assert store.track_ids.tolist() == [1, 2, 3, 4, 5]
    for t, clip in tracks.items():
        np.testing.assert_allclose(store.get(t).astype(np.float32), real_log_mel(F.mel_audio(clip, s)[0], s), atol=0.05)
    # another track list with the same settings reuses the overlapping rows
    calls.clear()
    more = {**tracks, 9: CLIP5}
    del more[1]
    rep = F.extract(more, kind="mel", out=tmp_path, settings=s, progress=False)
    assert len(calls) == 1 and (rep.done, rep.reused) == (1, 4)
    store = F.load_mel(tmp_path, settings=s)
    assert store.track_ids.tolist() == [2, 3, 4, 5, 9] and store.mel.shape == (5, 96, 235)
    np.testing.assert_array_equal(store.get(9), store.get(4))  # both are clip 5


def test_extract_audio_dir_parallel(tmp_path):
    s = F.MelSettings(seconds=10.0)
    clips = tmp_path / "clips"  # three of the 20 real clips of tests/data
    clips.mkdir()
    for clip in (CLIP2, CLIP5, CLIP140):
        shutil.copy(clip, clips)
    rep = F.extract_audio_dir(clips, kind="mel", out=tmp_path / "out", jobs=2, settings=s, progress=False)
    assert (rep.done, rep.failed, rep.jobs) == (3, 0, 2)
    store = F.load_mel(F.mel_dir(tmp_path / "out", s))
    assert store.track_ids.tolist() == [2, 5, 140]
    np.testing.assert_allclose(store.get(140).astype(np.float32), F.compute_mel(CLIP140, s)[0], atol=0.05)


def test_a_local_executor_extracts_in_the_same_worker_processes_as_none(tmp_path):
    """``open_executor("local")`` gives a LocalExecutor; extraction then runs ``jobs`` local
    processes exactly as with ``executor=None`` (same bytes)."""
    from mattlib import executors

    s = F.MelSettings(seconds=5.0)
    tracks = {2: CLIP2, 5: CLIP5}
    reports = []
    with executors.open_executor("local") as local:
        for name, executor in (("none", None), ("local", local)):
            out = tmp_path / name
            reports.append(
                F.extract(
                    tracks, kind="mel", out=out, jobs=2, settings=s, progress=False, chunk_size=1, executor=executor
                )
            )
    assert [(r.done, r.failed, r.jobs) for r in reports] == [(2, 0, 2)] * 2
    for name in ("mel.npy", "index.csv", "failures.csv"):
        a, b = (Path(r.paths["folder"]) / name for r in reports)
        assert a.read_bytes() == b.read_bytes(), name


def test_project_2d(reference):
    xy = F.project_2d(reference.iloc[:10], method="pca")
    assert list(xy.columns) == ["x", "y"] and xy.index.equals(reference.index[:10])
    assert np.isfinite(xy.to_numpy()).all() and xy["x"].std() > 0
    with pytest.raises(ValueError, match="method"):
        F.project_2d(reference, method="umap")


# --- notebook ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_notebook_02_features_runs(tmp_path):
    import papermill as pm

    root = tmp_path / "fma"
    shutil.copytree(DATA / "fma_metadata", root / "fma_metadata")
    (root / "fma_medium" / "000").mkdir(parents=True)
    for clip in (CLIP2, CLIP5, CLIP140):
        shutil.copy(clip, root / "fma_medium" / "000" / clip.name)
    out_dir = tmp_path / "out"
    nb = Path(__file__).parents[1] / "notebooks" / "02_features.ipynb"
    params = dict(data_root=str(root), subset="medium", cache_dir=str(tmp_path / "cache"),
                  output_dir=str(out_dir), kind="both", jobs=1, mel_seconds=10.0)  # fmt: skip
    pm.execute_notebook(str(nb), str(tmp_path / "02.ipynb"), parameters=params, kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False)  # fmt: skip
    metrics = json.loads((out_dir / "metrics.json").read_text())
    # tracks.csv lists every medium track; only the three clips exist: the rest fail ("not found")
    fma_rep, mel_rep = metrics["reports"]["fma518"], metrics["reports"]["mel"]
    assert fma_rep["done"] == 3 and mel_rep["done"] == 3
    assert fma_rep["failed"] == fma_rep["n_tracks"] - 3 == mel_rep["failed"]
    assert metrics["fma518_tracks"] == 3 and metrics["mel_tracks"] == 3
    assert metrics["mel_settings_id"] == "sr12000-n96-hop256-fft512-10s-start"
    assert sum(metrics["fma518_tracks_per_genre"].values()) == 3


@dataclasses.dataclass(frozen=True)
class _PeakSettings:
    """Settings of a toy array kind: one (1, 4) float16 row per clip."""

    shape: tuple = (1, 4)
    settings_id: str = "four"

    def to_dict(self):
        return {"shape": list(self.shape)}


def _peak_clip(path, settings):
    y, _ = load_audio(path, sr=8000, duration=1.0)
    y = np.abs(y[: 4 * (len(y) // 4)])
    return y.reshape(4, -1).max(axis=1).reshape(settings.shape).astype(np.float16), False


def test_a_feature_kind_registered_in_one_place_extracts_and_validates(tmp_path, monkeypatch):
    from mattlib.features import kinds
    from mattlib.study.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="unknown kind 'peak'; valid: fma518, mel, musicnn, both"):
        Settings(kind="peak")
    kind = kinds.FeatureKind("peak", "array", f"{__name__}:_peak_clip", settings=f"{__name__}:_PeakSettings")
    monkeypatch.setitem(kinds.KINDS, "peak", kind)
    assert Settings(kind="peak").kind == "peak"
    rep = F.extract({1: CLIP2, 2: tmp_path / "missing.mp3"}, kind="peak", out=tmp_path, progress=False)
    assert (rep.kind, rep.done, rep.failed) == ("peak", 1, 1)
    stored = np.load(tmp_path / "peak-four" / "mel.npy")  # the array store keeps the log-mel's file name
    assert stored.shape == (2, 1, 4) and stored[0].max() > 0
    with pytest.raises(ValueError, match="settings apply to kind='mel' / 'musicnn' / 'peak' only"):
        F.extract({1: CLIP2}, kind="fma518", out=tmp_path, settings=_PeakSettings(), progress=False)


def test_fma518_reads_the_first_30_s_and_lists_silence_as_a_failure(tmp_path):
    sr = 11025  # chroma CQT needs a Nyquist above 3.8 kHz
    t = np.arange(75 * sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * (220 + 2 * t) * t)).astype(np.float32)  # a glide: every second differs
    sf.write(tmp_path / "long.wav", tone, sr)
    sf.write(tmp_path / "first30.wav", tone[: 30 * sr], sr)
    sf.write(tmp_path / "silent.wav", np.zeros(10 * sr, np.float32), sr)
    long, first = (feature_stats.compute_fma518(tmp_path / f"{n}.wav") for n in ("long", "first30"))
    np.testing.assert_array_equal(long.to_numpy(), first.to_numpy())  # the rest of the file is never read
    assert long.isna().sum() > 0  # a pure glide leaves some skews / kurtoses undefined
    rep = F.extract(
        {1: tmp_path / "long.wav", 2: tmp_path / "silent.wav"}, kind="fma518", out=tmp_path / "c", progress=False
    )
    assert (rep.done, rep.failed) == (1, 1)
    failures = pd.read_csv(rep.paths["failures"])
    assert (
        failures["track_id"].tolist() == [2] and "silent (every sample of its first 30 s is 0)" in failures["error"][0]
    )
    stored = F.load_fma518(tmp_path / "c")
    assert np.isfinite(stored.to_numpy()).all()  # a constant chroma bin's skew is stored as 0, never NaN
