"""The study path on real FMA audio: the 20 real fma_small clips of tests/data (44.1 kHz VBR/CBR
mp3), their real tracks.csv rows, real album / artist ids and genres, through features -> bags ->
bag models -> metrics -> report."""

import json
import shutil

import pandas as pd
import pytest

from mattlib import features
from mattlib.study import experiment
from mattlib.study.settings import Settings
from mattlib.views import report

#: The 8 clips whose tracks.csv rows lie beyond the truncated file get rows built from the clip
#: manifest (FMA's own artist, album, genre); FMA's split is not in the manifest, so one is chosen
#: that keeps the study's splits artist-disjoint and every test genre present in training.
SPLIT_OF_EXTRA_ARTIST = {190: "training", 10: "training", 199: "training", 200: "test"}


def _real_root(data, tmp_path):
    """An FMA root holding the 20 clips and one tracks.csv row per clip."""
    root = tmp_path / "fma"
    (root / "fma_metadata").mkdir(parents=True)
    shutil.copy(data / "fma_metadata" / "genres.csv", root / "fma_metadata")
    shutil.copytree(data / "fma_small", root / "fma_small", ignore=shutil.ignore_patterns("*.csv"))
    manifest = pd.read_csv(data / "fma_small" / "clips_manifest.csv", index_col="track_id")
    tracks = pd.read_csv(data / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1], low_memory=False)
    real = tracks.loc[tracks.index.intersection(manifest.index)]
    extra = []
    for track_id, clip in manifest.drop(real.index).iterrows():
        row = real.iloc[0].copy()  # a real row's other fields; the ones the study reads are set
        row[("album", "id")], row[("album", "title")] = clip["album_id"], clip["album_title"]
        row[("artist", "id")], row[("artist", "name")] = clip["artist_id"], clip["artist_name"]
        row[("track", "title")], row[("track", "genre_top")] = clip["track_title"], clip["genre_top"]
        row[("track", "genres")] = f"[{clip['genre_ids']}]"
        row[("set", "split")], row[("set", "subset")] = SPLIT_OF_EXTRA_ARTIST[clip["artist_id"]], "small"
        extra.append(row.rename(track_id))
    pd.concat([real, pd.DataFrame(extra)]).to_csv(root / "fma_metadata" / "tracks.csv")
    return root


@pytest.mark.slow
def test_the_study_path_on_twenty_real_clips(fma_root, tmp_path, torch_one_thread):
    root, cache, run = _real_root(fma_root, tmp_path), tmp_path / "cache", tmp_path / "outputs" / "real"
    rep = features.extract_subset(root, subset="small", kind="fma518", out=cache, jobs=2, progress=False)
    assert (rep.done, rep.failed) == (20, 0)

    data = experiment.load(
        Settings(data_root=root, subset="small", cache_dir=cache, feature_set="all", max_bag_size=3),
        features_source="cache",
    )
    m = data.membership
    assert len(m) == 20 and data.instance_shape == (518,)
    assert set(data.classes) == {"Hip-Hop", "Pop", "Folk", "Experimental", "Rock", "International"}
    # Askew Ed's album "Blue Piano" (album 84): 5 real training tracks, chunked (3 + 2), none dropped
    blue_piano = m[m["album_id"] == 84]
    assert sorted(blue_piano["track_id"]) == [190, 193, 194, 197, 200]
    assert sorted(blue_piano.groupby("bag_id").size()) == [2, 3]
    test = m[m["split"] == "test"]
    assert sorted(test["track_id"]) == [182, 1083]  # Ariel Pink (Rock), Magic Lantern (Experimental)

    tiny = Settings(epochs=3, patience=3, batch_size=4, hidden=(16,), seed=0, model="mlp")
    for notebook, pooling in (("04_mil", "none"), ("04_mil", "mean"), ("05_matt", "matt")):
        result = experiment.run_bag_model(data, tiny.replace(pooling=pooling), progress=False)
        result.save(run / notebook / f"all-mlp-{pooling}", notebook=notebook)
        assert result.main.metrics["n_tracks"] == 2

    attention = json.loads((run / "05_matt" / "all-mlp-matt" / "attention.json").read_text())
    assert {tuple(b["tracks"]) for b in attention["bags"]} == {(182,), (1083,)}
    index = report.build_report(run)
    assert "Do bags, and attention over them, help the rare genres?" in index.read_text()
    t1 = pd.read_csv(index.parent / "table1.csv")
    assert set(t1["model"]) == {"MLP (torch)", "MLP (torch)+late", "MLP+MIL", "MLP+MATT"}
    assert (t1["test_tracks"] == 2).all() and (t1["test_albums"] == 2).all()
    paired = pd.read_csv(index.parent / "paired.csv")
    assert "MLP+MATT − MLP+MIL" in set(paired["comparison"])
