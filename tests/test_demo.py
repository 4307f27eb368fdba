"""Tests of mattlib.data.demo: the synthetic demo dataset in FMA's on-disk format."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mattlib.data import demo

REAL_METADATA = Path(__file__).parent / "data" / "fma_metadata"
N_TRACKS = 160
SECONDS = 2.0
SR = 22050
SEED = 3
GENRES = list(demo.FMA_MEDIUM_TRAINING_COUNTS)
SPLITS = ["training", "validation", "test"]


def _mp3(root: Path, track_id: int) -> Path:
    tid = f"{int(track_id):06d}"
    return root / "fma_medium" / tid[:3] / f"{tid}.mp3"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "fma"
    return demo.generate_demo(out, n_tracks=N_TRACKS, seconds=SECONDS, seed=SEED, sr=SR, jobs=2, progress=False)


@pytest.fixture(scope="module")
def tracks(root) -> pd.DataFrame:
    return pd.read_csv(root / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])


@pytest.fixture(scope="module")
def manifest(root) -> pd.DataFrame:
    return pd.read_csv(root / "demo_manifest.csv", keep_default_na=False)


# ---- layout and format -------------------------------------------------------------------------


def test_layout_and_marker(root, manifest):
    assert demo.is_demo_root(root)
    assert not root.with_name(root.name + ".partial").exists()
    for name in (
        "fma_metadata/tracks.csv",
        "fma_metadata/genres.csv",
        "README.md",
        "demo_manifest.csv",
        demo.DEMO_MARKER,
    ):
        assert (root / name).is_file(), name
    mp3s = sorted((root / f"fma_{demo.DEMO_SUBSET}").glob("*/*.mp3"))
    assert len(mp3s) == N_TRACKS == len(manifest)
    assert {p for p in mp3s} == {_mp3(root, t) for t in manifest["track_id"]}
    assert "synthetic" in (root / "README.md").read_text().lower()


def test_tracks_csv_header_matches_real_fma(root, tracks):
    real = pd.read_csv(REAL_METADATA / "tracks.csv", index_col=0, header=[0, 1], nrows=5)
    assert list(tracks.columns) == list(real.columns) == demo.TRACKS_COLUMNS
    assert len(tracks.columns) == 52
    assert tracks.index.name == real.index.name == "track_id"
    assert len(tracks) == N_TRACKS and tracks.index.is_unique
    assert tracks.index.min() == 2  # as on FMA
    # The same 3 header lines as FMA's file: groups, fields, then the index name.
    ours = (root / "fma_metadata" / "tracks.csv").read_text().splitlines()[:3]
    theirs = (REAL_METADATA / "tracks.csv").read_text().splitlines()[:3]
    assert ours == theirs


def test_genres_csv_is_fmas_official_file(root):
    copied = (root / "fma_metadata" / "genres.csv").read_bytes()
    assert copied == (REAL_METADATA / "genres.csv").read_bytes()
    assert copied == (Path(demo.__file__).parent / "genres.csv").read_bytes()


def test_genre_columns_use_real_fma_ids(root, tracks):
    genres = pd.read_csv(REAL_METADATA / "genres.csv", index_col=0)
    assert set(tracks[("track", "genre_top")]) == set(GENRES)
    for _, row in tracks.iterrows():
        ids = ast.literal_eval(row[("track", "genres")])
        every = ast.literal_eval(row[("track", "genres_all")])
        assert ids and set(ids) <= set(every) <= set(genres.index)
        tops = {genres.at[g, "top_level"] for g in every}
        assert len(tops) == 1
        assert genres.at[tops.pop(), "title"] == row[("track", "genre_top")]
    assert tracks[("track", "duration")].min() >= 1
    assert tracks[("album", "tracks")].ge(1).all()
    assert set(tracks[("set", "subset")]) == {"small", "medium"}
    small = tracks[tracks[("set", "subset")] == "small"]
    assert set(small[("track", "genre_top")]) == {
        "Electronic",
        "Experimental",
        "Folk",
        "Hip-Hop",
        "Instrumental",
        "International",
        "Pop",
        "Rock",
    }


def test_fma_loader_reads_demo(root):
    from mattlib.data import fma

    loaded = fma.load_tracks(root)
    assert len(loaded) == N_TRACKS
    assert loaded[("set", "subset")].cat.ordered
    assert all(isinstance(g, list) and g for g in loaded[("track", "genres")])
    medium = fma.subset_tracks(loaded, demo.DEMO_SUBSET)
    assert len(medium) == N_TRACKS
    path = fma.audio_path(root, int(loaded.index[0]), subset=demo.DEMO_SUBSET)
    assert path == _mp3(root, loaded.index[0])


# ---- proportions, splits, bags -------------------------------------------------------------


def test_long_tail_proportions(tracks):
    counts = tracks.groupby([("track", "genre_top"), ("set", "split")]).size().unstack(fill_value=0)
    counts = counts.reindex(index=GENRES, columns=SPLITS, fill_value=0)
    assert (counts >= 2).all().all(), counts  # every genre in every split, >= 2 test tracks
    training = counts["training"].to_numpy()
    assert (np.diff(training) <= 0).all(), counts["training"]  # FMA's order is kept
    assert training[0] > training[1:].max()  # Rock the largest
    assert training[-1] < training[0] / 3
    assert counts["training"].sum() >= 0.6 * N_TRACKS


def test_default_size_keeps_a_long_tail():
    totals = demo._genre_totals(demo.DEFAULT_N_TRACKS)
    assert sum(totals.values()) == demo.DEFAULT_N_TRACKS
    values = [totals[g] for g in GENRES]
    assert values == sorted(values, reverse=True)
    assert values[0] >= 10 * values[-1]
    for total in range(7, 200):
        split = demo._split_counts(total)
        assert sum(split.values()) == total and min(split.values()) >= 2
        assert split["training"] >= demo._split_counts(total - 1)["training"] or total == 7


def test_splits_are_artist_disjoint_and_albums_nested(tracks):
    artist = tracks[("artist", "id")]
    album = tracks[("album", "id")]
    assert tracks[("set", "split")].groupby(artist).nunique().eq(1).all()
    assert artist.groupby(album).nunique().eq(1).all()
    assert tracks[("track", "genre_top")].groupby(album).nunique().eq(1).all()
    sizes = album.value_counts()
    assert sizes.max() <= 8 and sizes.max() >= 4 and (sizes == 1).any()
    assert album.groupby(artist).nunique().max() >= 2  # several albums per artist
    assert tracks[("track", "number")].groupby(album).apply(lambda n: sorted(n) == list(range(1, len(n) + 1))).all()


def test_manifest_agrees_with_tracks(tracks, manifest):
    m = manifest.set_index("track_id").loc[tracks.index]
    assert (m["genre"] == tracks[("track", "genre_top")]).all()
    assert (m["split"] == tracks[("set", "split")]).all()
    assert (m["album_id"] == tracks[("album", "id")]).all()
    assert (m["artist_id"] == tracks[("artist", "id")]).all()
    assert sorted(manifest["fault"]) == [""] * (N_TRACKS - 3) + ["empty", "short", "truncated"]


# ---- audio ---------------------------------------------------------------------------------


def test_faulty_clips(root, manifest):
    fault = manifest.set_index("fault")["track_id"]
    expected = int(SECONDS * SR)
    assert _mp3(root, fault["empty"]).stat().st_size == 0
    with pytest.raises(sf.LibsndfileError):
        sf.read(_mp3(root, fault["empty"]))
    truncated = _mp3(root, fault["truncated"])
    try:
        y, _ = sf.read(truncated)
        assert len(y) < 0.8 * expected
    except Exception:
        pass  # failing to decode is what a truncated file may do
    y, sr = sf.read(_mp3(root, fault["short"]))
    assert sr == SR and abs(len(y) - 0.4 * expected) <= 1152
    # Faults sit in training albums of >= 2 tracks of the two largest genres.
    rows = manifest.set_index("track_id").loc[fault.drop("")]
    assert set(rows["split"]) == {"training"}
    assert set(rows["genre"]) <= {"Rock", "Electronic"}


def test_clips_decode_to_the_clip_length(root, manifest):
    ok = manifest[manifest["fault"] == ""]
    picks = ok.groupby("genre").head(1).sample(6, random_state=0)["track_id"]
    for track_id in picks:
        y, sr = sf.read(_mp3(root, track_id), dtype="float32")
        assert sr == SR and y.ndim == 1
        assert abs(len(y) - SECONDS * SR) <= 1152, (track_id, len(y))
        assert 0.01 < np.sqrt(np.mean(y**2)) and np.abs(y).max() <= 1.0
    import librosa

    y, sr = librosa.load(_mp3(root, picks.iloc[0]), sr=None, mono=True)
    assert sr == SR and abs(len(y) - SECONDS * SR) <= 1152


def test_genres_are_audibly_different(root, manifest):
    """MFCC statistics + an RBF SVM beat chance (1/16) threefold on held-out artists."""
    import librosa
    from sklearn import preprocessing, svm

    ok = manifest[manifest["fault"] == ""]
    features = []
    for track_id in ok["track_id"]:
        y, sr = sf.read(_mp3(root, track_id), dtype="float32")
        mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
        features.append(np.concatenate([mfcc.mean(1), mfcc.std(1)]))
    features = np.array(features)
    train = (ok["split"] == "training").to_numpy()
    genre = ok["genre"].to_numpy()
    scaler = preprocessing.StandardScaler().fit(features[train])
    clf = svm.SVC(class_weight="balanced").fit(scaler.transform(features[train]), genre[train])
    accuracy = (clf.predict(scaler.transform(features[~train])) == genre[~train]).mean()
    assert accuracy > 3 / len(GENRES), accuracy


# ---- determinism, atomicity, validation ----------------------------------------------------


def test_same_seed_same_bytes(root, tmp_path):
    # tracks.csv: the plan drawn again from the same seed gives the same bytes; another seed not.
    written = (root / "fma_metadata" / "tracks.csv").read_bytes()
    again, _, tasks = demo._plan(n_tracks=N_TRACKS, seed=SEED)
    assert again.to_csv(lineterminator=os.linesep).encode() == written
    other = demo._plan(n_tracks=N_TRACKS, seed=SEED + 1)[0]
    assert other.to_csv(lineterminator=os.linesep).encode() != written
    # Audio: re-rendering tracks in this process (the fixture used 2 workers) gives the same
    # MP3 bytes.
    for task in tasks[:4]:
        task.update(root=str(tmp_path), seconds=SECONDS, sr=SR, seed=SEED)
        demo._render_task(task)
        tid = f"{task['track_id']:06d}"
        mine = (tmp_path / tid[:3] / f"{tid}.mp3").read_bytes()
        assert hashlib.sha256(mine).digest() == hashlib.sha256(_mp3(root, task["track_id"]).read_bytes()).digest()


def test_rerun_is_a_noop_and_incomplete_root_regenerates(root, tmp_path):
    copy = tmp_path / "d"
    shutil.copytree(root, copy)
    csv = copy / "fma_metadata" / "tracks.csv"
    os.utime(csv, (1, 1))
    settings = dict(n_tracks=N_TRACKS, seconds=SECONDS, seed=SEED, sr=SR, progress=False)
    assert demo.generate_demo(copy, **settings) == copy
    assert csv.stat().st_mtime == 1  # complete, same settings: untouched
    (copy / demo.DEMO_MARKER).unlink()  # as if killed before the end
    assert not demo.is_demo_root(copy)
    demo.generate_demo(copy, n_tracks=112, seconds=0.5, seed=1, jobs=1, progress=False)
    assert demo.is_demo_root(copy) and csv.stat().st_mtime > 1
    assert len(pd.read_csv(csv, index_col=0, header=[0, 1])) == 112
    assert len(list((copy / "fma_medium").glob("*/*.mp3"))) == 112
    assert not (tmp_path / "d.partial").exists()


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError):
        demo.generate_demo(foreign, n_tracks=112, seconds=0.5, jobs=1, progress=False)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    assert not demo.is_demo_root(tmp_path / "nothing")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_tracks": 50},
        {"n_tracks": 200.5},
        {"seconds": 0.0},
        {"seconds": "10"},
        {"sr": 12345},
        {"jobs": 0},
        {"seed": -1},
        {"n_tracks": True},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        demo.generate_demo(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()
