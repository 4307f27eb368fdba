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

from mattlib.data import demo, planted

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
    training = [demo._split_counts(totals[g], 8)["training"] for g in GENRES]
    assert training == sorted(training, reverse=True)
    assert training[0] >= 10 * training[-1]  # the long tail is in the training counts
    for floor in (2, 8):
        for total in range(5 + floor, 200):
            split = demo._split_counts(total, floor)
            assert sum(split.values()) == total and min(split.values()) >= 2 and split["test"] >= floor
            assert split["training"] >= demo._split_counts(total - 1, floor)["training"] or total == 5 + floor


def test_the_default_demo_has_enough_test_albums_for_tail_intervals():
    from mattlib.data import demo_plan
    from mattlib.evaluation.uncertainty import MIN_ALBUMS

    _, manifest, _ = demo_plan._plan(n_tracks=demo.DEFAULT_N_TRACKS, seed=0)
    test = manifest[manifest["split"] == "test"]
    rarest = ["Easy Listening", "Blues", "Soul-RnB", "Spoken"]  # "<100" on FMA medium and the demo
    assert test.loc[test["genre"].isin(rarest), "album_id"].nunique() >= MIN_ALBUMS


def test_splits_are_artist_disjoint_and_albums_nested(tracks):
    artist = tracks[("artist", "id")]
    album = tracks[("album", "id")]
    assert tracks[("set", "split")].groupby(artist).nunique().eq(1).all()
    assert artist.groupby(album).nunique().eq(1).all()
    # one genre per album, except the few test albums that mix genres (one guest track each)
    n_genres = tracks[("track", "genre_top")].groupby(album).nunique()
    split = tracks[("set", "split")].groupby(album).first()
    assert 1 <= (n_genres > 1).sum() <= 4 and set(split[n_genres > 1]) == {"test"} and n_genres.max() == 2
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
    """MFCC statistics + an RBF SVM beat chance (1/16) threefold on held-out artists, on the
    tracks that carry their genre (the default effect, attention, makes the others fillers)."""
    import librosa
    from sklearn import preprocessing, svm

    ok = manifest[(manifest["fault"] == "") & manifest["informative"]]
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
    again, plan, tasks = demo._plan(n_tracks=N_TRACKS, seed=SEED)
    plan = planted.assign_roles(plan, effect=demo.DEFAULT_EFFECT)
    demo.planted_tasks(tasks, plan, effect=demo.DEFAULT_EFFECT, seed=SEED)
    assert again.to_csv(lineterminator=os.linesep).encode() == written
    other = demo._plan(n_tracks=N_TRACKS, seed=SEED + 1)[0]
    assert other.to_csv(lineterminator=os.linesep).encode() != written
    # Audio: re-rendering tracks in this process (the fixture used 2 workers) gives the same
    # MP3 bytes (an informative track and a filler among them).
    filler = plan["role"].eq("filler")
    picks = [tasks[i] for i in [*range(3), int(filler.idxmax()), int((~filler).idxmax())]]
    for task in picks:
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


# ---- planted effects -----------------------------------------------------------------------

EFFECTS = list(planted.EFFECTS)


@pytest.fixture(scope="module")
def feature_roots(tmp_path_factory) -> dict[str, Path]:
    """Features-only demos of every effect, one seed (about a second each)."""
    base = tmp_path_factory.mktemp("planted")
    return {e: demo.generate_demo_features(base / e, effect=e, n_tracks=300, seed=SEED) for e in EFFECTS}


def _read(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from mattlib.data import fma

    manifest = pd.read_csv(root / "demo_manifest.csv", keep_default_na=False).set_index("track_id")
    features = fma.load_features(root)
    tracks = pd.read_csv(root / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])
    return manifest, features.loc[manifest.index], tracks


def test_registry_answers_every_comparison():
    assert EFFECTS == ["null", "bag", "attention"] and demo.DEFAULT_EFFECT in EFFECTS
    for name, effect in planted.EFFECTS.items():
        assert effect.name == name and effect.description
        assert set(effect.answers) == set(effect.notes) == set(planted.COMPARISONS)
        assert set(effect.answers.values()) <= set(planted.ANSWERS)
    assert set(planted.EFFECTS["null"].answers.values()) <= {"0", "= uniform"}
    assert planted.EFFECTS["bag"].answers["bag − track"] == "+"
    attention = planted.EFFECTS["attention"].answers
    assert attention["MIL − late"] == "+" and attention["attention on informative tracks"] == "> uniform"
    assert attention["MATT − MIL"] == "?"  # not planted: a mean-pool encoder can learn to mute fillers
    with pytest.raises(ValueError, match="answer every comparison"):
        planted.Effect("x", "y", answers={"bag − track": "+"}, notes={"bag − track": ""})


@pytest.mark.parametrize("call", ["audio", "features"])
def test_unknown_effect_is_one_line_naming_the_valid_ones(tmp_path, call):
    generate = demo.generate_demo if call == "audio" else demo.generate_demo_features
    with pytest.raises(ValueError) as err:
        generate(tmp_path / "x", effect="attn")
    assert str(err.value) == "unknown demo effect 'attn'; valid: null, bag, attention"
    assert not (tmp_path / "x").exists()


def test_every_effect_has_the_same_plan(feature_roots):
    tracks = {e: (feature_roots[e] / "fma_metadata" / "tracks.csv").read_bytes() for e in EFFECTS}
    assert len(set(tracks.values())) == 1
    marked = [pd.read_csv(feature_roots[e] / "demo_manifest.csv")["marked"].to_numpy() for e in EFFECTS]
    assert all(np.array_equal(marked[0], m) for m in marked[1:])
    features = [(feature_roots[e] / "fma_metadata" / "features.csv").read_bytes() for e in EFFECTS]
    assert len(set(features)) == 3


@pytest.mark.parametrize("effect", EFFECTS)
def test_marker_and_readme_record_the_effect(feature_roots, effect):
    import json

    root = feature_roots[effect]
    assert demo.is_demo_root(root)
    marker = json.loads((root / demo.DEMO_MARKER).read_text())
    assert marker["effect"] == effect and marker["audio"] is False and marker["n_tracks"] == 300
    readme = (root / "README.md").read_text()
    assert f"Planted effect: `{effect}`" in readme and planted.EFFECTS[effect].notes["MATT − MIL"] in readme
    manifest = pd.read_csv(root / "demo_manifest.csv", keep_default_na=False)
    assert set(manifest["effect"]) == {effect}
    assert {"informative", "role", "marked", "album_genre", "mixed_album"} <= set(manifest.columns)
    assert manifest["informative"].dtype == bool


def test_another_effect_regenerates_the_root(tmp_path):
    out = tmp_path / "d"
    demo.generate_demo_features(out, effect="null", n_tracks=112)
    csv = out / "fma_metadata" / "features.csv"
    os.utime(csv, (1, 1))
    demo.generate_demo_features(out, effect="null", n_tracks=112)
    assert csv.stat().st_mtime == 1  # same settings: untouched
    demo.generate_demo_features(out, effect="bag", n_tracks=112)
    assert set(pd.read_csv(out / "demo_manifest.csv")["effect"]) == {"bag"} and csv.stat().st_mtime > 1


def test_mixed_albums_in_the_test_split(feature_roots):
    from mattlib.data import bags

    manifest, _, tracks = _read(feature_roots["bag"])
    mixed = manifest[manifest["mixed_album"]]
    albums = mixed.groupby("album_id")
    assert 2 <= albums.ngroups <= 4 and set(mixed["split"]) == {"test"}
    guests = mixed[mixed["genre"] != mixed["album_genre"]]
    assert albums["genre"].nunique().eq(2).all() and len(guests) == albums.ngroups  # one guest each
    assert (albums.size() >= 3).all()  # the album's genre is a strict majority
    assert (guests["role"] == "guest").all() and not guests["informative"].any() and not guests["marked"].any()
    # tracks.csv agrees: the guest keeps its own genre and takes the host's album and artist
    assert (tracks.loc[guests.index, ("track", "genre_top")] == guests["genre"]).all()
    assert tracks[("artist", "id")].groupby(tracks[("album", "id")]).nunique().eq(1).all()
    # the bag's genre is its majority genre
    membership = bags.make_bags(tracks)
    test_bags = membership[membership["album_id"].isin(albums.groups)]
    assert (test_bags["bag_genre"].to_numpy() == manifest.loc[test_bags["track_id"], "album_genre"].to_numpy()).all()
    assert (bags.bag_table(test_bags)["purity"] < 1).all()


def test_null_features_are_one_recording_per_album(feature_roots):
    manifest, features, _ = _read(feature_roots["null"])
    assert (manifest["role"] == "rendition").all() and manifest["informative"].all()
    per_album = features.groupby(manifest["album_id"])
    assert per_album.nunique().max().max() == 1  # album-mates identical, guests included
    assert per_album.ngroups == len(features.drop_duplicates())  # and albums differ


def test_bag_features_differ_per_track(feature_roots):
    manifest, features, _ = _read(feature_roots["bag"])
    assert set(manifest["role"]) == {"informative", "guest"}
    assert manifest["informative"].eq(manifest["role"] == "informative").all()
    assert len(features.drop_duplicates()) == len(features)


def test_attention_roles(feature_roots):
    manifest, features, _ = _read(feature_roots["attention"])
    own = manifest[manifest["genre"] == manifest["album_genre"]]
    informative = own.groupby("album_id")["informative"]
    sizes = own.groupby("album_id").size()
    assert (informative.sum() == np.maximum(1, np.round(sizes / 3))).all()  # at least one per album
    assert own.loc[own["album_id"].map(sizes) == 1, "informative"].all()  # bags of one always
    assert 0.3 <= manifest["informative"].mean() <= 0.45  # about a third (more in small test albums)
    assert manifest["informative"].eq(manifest["marked"]).all()
    fillers = manifest["role"] == "filler"
    assert fillers.eq(~manifest["informative"] & (manifest["genre"] == manifest["album_genre"])).all()
    # fillers carry no genre: on the standardised genre-signal columns, the mean filler of the
    # head genres is closer to the mean filler of the others than informative tracks of the two are
    z = (features - features.mean()) / features.std()
    z = z.loc[:, ["mfcc", "spectral_contrast", "spectral_centroid", "zcr"]]
    head = manifest["genre"].isin(["Rock", "Electronic"])
    gap_fill = np.linalg.norm(z[fillers & head].mean() - z[fillers & ~head].mean())
    inf = manifest["informative"]
    gap_inf = np.linalg.norm(z[inf & head].mean() - z[inf & ~head].mean())
    assert gap_fill < gap_inf / 2, (gap_fill, gap_inf)


def test_attention_fillers_are_genre_free_in_audio():
    _, plan, tasks = demo._plan(n_tracks=N_TRACKS, seed=SEED)
    plan = planted.assign_roles(plan, effect="attention")
    demo.planted_tasks(tasks, plan, effect="attention", seed=SEED)
    fillers = [t for t, role in zip(tasks, plan["role"]) if role == "filler"]
    styles = {(t["style"]["scale"], t["style"]["pattern"], tuple(t["style"]["params"].values())) for t in fillers}
    assert len(fillers) >= N_TRACKS / 3 and len(styles) == 1  # one style for every genre's fillers
    informative = [t for t, role in zip(tasks, plan["role"]) if role == "informative"]
    assert all(t["style"]["scale"] != "whole_tone" for t in informative)


@pytest.mark.slow
def test_null_audio_is_one_recording_per_album(tmp_path):
    from mattlib.features import stats

    root = demo.generate_demo(tmp_path / "null", effect="null", n_tracks=112, seconds=1.0, jobs=1, progress=False)
    manifest = pd.read_csv(root / "demo_manifest.csv", keep_default_na=False)
    assert (manifest["role"] == "rendition").all()
    ok = manifest[manifest["fault"] == ""]
    digests = ok["track_id"].map(lambda t: hashlib.sha256(_mp3(root, t).read_bytes()).hexdigest())
    per_album = digests.groupby(ok["album_id"])
    assert per_album.nunique().eq(1).all()  # album-mates' MP3s are byte-identical, guests included
    assert digests.nunique() == per_album.ngroups
    album = ok.groupby("album_id")["track_id"].apply(list).loc[lambda a: a.map(len) >= 2].iloc[0]
    vectors = [stats.fma518_vector(sf.read(_mp3(root, t), dtype="float32")[0], sr=22050) for t in album[:2]]
    assert np.array_equal(vectors[0], vectors[1], equal_nan=True)
