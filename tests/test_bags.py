"""mattlib.data.bags on hand-built cases and on real FMA rows."""

import pandas as pd
import pytest

from mattlib.data import bags, fma


def flat(rows):
    return pd.DataFrame(rows, columns=["track_id", "album_id", "artist_id", "split", "genre"])


def test_training_bags_are_pure_test_bags_keep_mixed_labels():
    tracks = flat(
        [
            (1, 10, 1, "training", "Rock"),
            (2, 10, 1, "training", "Rock"),
            (3, 10, 1, "training", "Pop"),  # same album, other genre: its own training bag
            (4, 20, 2, "test", "Rock"),
            (5, 20, 2, "test", "Rock"),
            (6, 20, 2, "test", "Pop"),  # test bags are keyed by (album, artist) only
        ]
    )
    m = bags.make_bags(tracks)
    table = bags.bag_table(m)
    train = table[table["split"] == "training"]
    assert sorted(train["size"]) == [1, 2]
    assert (train["purity"] == 1.0).all()
    test = table[table["split"] == "test"]
    assert len(test) == 1
    assert test["size"].iloc[0] == 3
    assert test["bag_genre"].iloc[0] == "Rock"
    assert test["purity"].iloc[0] == pytest.approx(2 / 3)
    # every track keeps its own genre
    assert m.set_index("track_id").loc[6, "genre"] == "Pop"
    assert m.set_index("track_id").loc[6, "bag_genre"] == "Rock"


def test_no_album_policies():
    tracks = flat(
        [
            (1, -1, 5, "training", "Jazz"),
            (2, -1, 5, "training", "Jazz"),
            (3, 30, 5, "training", "Jazz"),
        ]
    )
    single = bags.make_bags(tracks)
    assert bags.bag_table(single)["size"].sort_values().tolist() == [1, 1, 1]
    by_artist = bags.make_bags(tracks, no_album="artist")
    assert bags.bag_table(by_artist)["size"].sort_values().tolist() == [1, 2]
    dropped = bags.make_bags(tracks, no_album="drop")
    assert dropped["track_id"].tolist() == [3]
    with pytest.raises(ValueError, match="valid: singleton, artist, drop"):
        bags.make_bags(tracks, no_album="merge")


def test_missing_album_id_treated_as_no_album():
    tracks = flat([(1, None, 5, "training", "Jazz"), (2, None, 5, "training", "Jazz")])
    m = bags.make_bags(tracks)
    assert m["album_id"].tolist() == [-1, -1]
    assert m["bag_id"].nunique() == 2


def test_chunking_large_bags():
    tracks = flat([(i, 1, 1, "training", "Rock") for i in range(10)])
    m = bags.make_bags(tracks, max_size=4)
    sizes = bags.bag_table(m)["size"].sort_values().tolist()
    assert sizes == [3, 3, 4]  # ceil(10 / 4) = 3 near-equal chunks
    assert m["bag_id"].nunique() == 3
    # chunks follow track order: the first chunk holds the lowest track ids
    first = m.groupby("bag_id")["track_id"].min().sort_values()
    assert first.tolist() == [0, 4, 7]
    assert bags.make_bags(tracks, min_size=11).empty


def test_unlabelled_tracks_are_dropped_and_counted():
    tracks = flat([(1, 1, 1, "training", None), (2, 1, 1, "training", "Rock")])
    m = bags.make_bags(tracks)
    assert m["track_id"].tolist() == [2]
    assert m.attrs["dropped_unlabelled"] == 1


def test_audit_detects_crossing_artists_and_albums():
    tracks = flat(
        [
            (1, 10, 1, "training", "Rock"),
            (2, 10, 1, "test", "Rock"),  # same album and artist in two splits
            (3, 11, 2, "training", "Pop"),
            (4, 12, 2, "validation", "Pop"),  # same artist, other album, other split
            (5, 13, 3, "test", "Jazz"),
        ]
    )
    m = bags.make_bags(tracks)
    audit = bags.audit_bags(m)
    assert audit["crossing_albums"][["album_id", "artist_id"]].values.tolist() == [[10, 1]]
    assert sorted(audit["crossing_artists"]["artist_id"]) == [1, 2]
    with pytest.raises(bags.LeakageError, match="album-artist keys in more than one split: 1 "):
        bags.assert_no_leakage(m)


def test_real_fma_bags_have_no_leakage(fma_root):
    tracks = fma.subset_tracks(fma.load_tracks(fma_root), "medium")
    m = bags.make_bags(tracks)
    assert len(m) == 194
    bags.assert_no_leakage(m)
    audit = bags.audit_bags(m)
    summary = audit["summary"]
    assert (
        summary.loc["training", "n_tracks"] + summary.loc["validation", "n_tracks"] + summary.loc["test", "n_tracks"]
        == 194
    )
    assert summary.loc["training", "mean_purity"] == 1.0
    # AWOL's album "AWOL - A Way Of Life" in fma_medium: tracks 2, 3, 5 and 134
    awol = m[m["bag_id"] == m.set_index("track_id").loc[2, "bag_id"]]
    assert set(awol["track_id"]) == {2, 3, 5, 134}
    assert (awol["album_id"] == 1).all() and (awol["genre"] == "Hip-Hop").all()


def test_singletons_and_train_counts():
    tracks = flat([(1, 1, 1, "training", "Rock"), (2, 1, 1, "training", "Rock"), (3, 2, 2, "training", "Pop")])
    m = bags.make_bags(tracks)
    s = bags.singletons(m)
    assert (s["bag_size"] == 1).all() and s["bag_id"].nunique() == 3
    counts = bags.train_counts(m, classes=["Pop", "Rock", "Blues"])
    assert counts.to_dict() == {"Rock": 2, "Pop": 1, "Blues": 0}
    scopes = bags.bag_scopes(m)
    assert sorted(len(v) for v in scopes.values()) == [1, 2]


def test_validation_bags_are_built_like_test_bags():
    """Model selection must see the test's bags: (album, artist) only, mixed labels kept."""
    tracks = flat([(1, 40, 4, "validation", "Rock"), (2, 40, 4, "validation", "Rock"), (3, 40, 4, "validation", "Pop")])
    m = bags.make_bags(tracks)
    assert m["bag_id"].nunique() == 1
    assert m["bag_genre"].tolist() == ["Rock"] * 3 and m["genre"].tolist() == ["Rock", "Rock", "Pop"]


def test_only_training_bags_are_chunked_and_no_track_is_dropped():
    tracks = flat(
        [(i, 1, 1, "training", "Rock") for i in range(10)]
        + [(100 + i, 2, 2, "validation", "Pop") for i in range(10)]
        + [(200 + i, 3, 3, "test", "Jazz") for i in range(10)]
    )
    m = bags.make_bags(tracks, max_size=4)
    sizes = bags.bag_table(m).groupby("split")["size"].apply(sorted).to_dict()
    assert sizes == {"training": [3, 3, 4], "validation": [10], "test": [10]}
    assert len(m) == 30
    above = bags.tracks_above_cap(bags.make_bags(tracks), max_size=4)
    assert above.loc["test", "bags_above"] == 1 and above.loc["test", "tracks_in_them"] == 10
    assert above.loc["test", "tracks_beyond_cap"] == 6 and above.loc["test", "share_of_tracks"] == 1.0
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        bags.tracks_above_cap(m, max_size=0)
