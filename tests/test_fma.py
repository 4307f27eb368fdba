"""mattlib.data.fma on real FMA rows (tests/data is a truncated copy of the official files)."""

import pandas as pd
import pytest

from mattlib.data import fma


@pytest.fixture(scope="module")
def tracks(fma_root):
    return fma.load_tracks(fma_root)


def test_track_2_is_awol(tracks):
    row = tracks.loc[2]
    assert row[("artist", "name")] == "AWOL"
    assert row[("album", "title")] == "AWOL - A Way Of Life"
    assert row[("track", "genre_top")] == "Hip-Hop"
    assert row[("set", "subset")] == "small"
    assert row[("set", "split")] == "training"
    assert row[("track", "genres")] == [21]
    assert row[("album", "id")] == 1 and row[("artist", "id")] == 1


def test_shape_header_and_types(tracks):
    assert tracks.shape == (682, 52)
    assert tracks.index.name == "track_id"
    assert tracks.index.min() == 2 and tracks.index.max() == 932
    assert set(tracks.columns.get_level_values(0)) == {"album", "artist", "set", "track"}
    assert all(isinstance(v, list) for v in tracks[("track", "genres_all")])
    assert pd.api.types.is_datetime64_any_dtype(tracks[("track", "date_created")])
    assert tracks.loc[2, ("track", "date_created")] == pd.Timestamp("2008-11-26 01:48:12")


def test_subset_is_ordered_and_cumulative(tracks):
    subset = tracks[("set", "subset")]
    assert subset.cat.ordered and list(subset.cat.categories) == ["small", "medium", "large"]
    assert subset.value_counts().to_dict() == {"large": 488, "medium": 136, "small": 58}
    assert len(fma.subset_tracks(tracks, "small")) == 58
    assert len(fma.subset_tracks(tracks, "medium")) == 194
    assert len(fma.subset_tracks(tracks, "large")) == 682
    with pytest.raises(ValueError, match="valid: small, medium, large"):
        fma.subset_tracks(tracks, "huge")


def test_split_counts(tracks):
    assert tracks[("set", "split")].value_counts().to_dict() == {
        "training": 563,
        "validation": 48,
        "test": 71,
    }


def test_genres(fma_root):
    genres = fma.load_genres(fma_root)
    assert len(genres) == 163
    top = fma.top_genres(genres)
    assert len(top) == 16
    assert {"Rock", "Easy Listening", "Old-Time / Historic", "Soul-RnB"} <= set(top)
    assert genres.loc[21, "title"] == "Hip-Hop" and genres.loc[21, "top_level"] == 21


def test_audio_path(fma_root):
    path = fma.audio_path(fma_root, 2, subset="small")
    assert path == fma_root / "fma_small" / "000" / "000002.mp3"
    assert path.exists()
    assert fma.audio_path("/x", 123456, subset="medium").as_posix() == "/x/fma_medium/123/123456.mp3"
    with pytest.raises(ValueError, match="unknown FMA subset"):
        fma.audio_path("/x", 2, subset="tiny")


def test_missing_file_names_path_and_download(tmp_path):
    with pytest.raises(fma.FMADataError, match=r"tracks\.csv not found: .*fma_metadata.*fma_metadata\.zip"):
        fma.load_tracks(tmp_path)


def test_malformed_list_names_row_and_column(fma_root, tmp_path):
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    text = (fma_root / "fma_metadata" / "tracks.csv").read_text()
    text = text.replace(",[21],", ",[21x],", 1)  # break track 2's genres list
    (meta / "tracks.csv").write_text(text)
    with pytest.raises(fma.FMADataError, match=r"track 2, column \('track', 'genres'\)"):
        fma.load_tracks(tmp_path)


def test_not_fma_header(tmp_path):
    meta = tmp_path / "fma_metadata"
    meta.mkdir()
    (meta / "tracks.csv").write_text("a,b\n1,2\n")
    with pytest.raises(fma.FMADataError, match="tracks.csv"):
        fma.load_tracks(tmp_path)


def test_load_features_reference(fma_root):
    features = fma.load_features(fma_root / "reference" / "features_prefixes_tracks2_5.csv")
    assert features.shape[1] == 518
    assert features.columns.nlevels == 3
    assert ("mfcc", "mean", "01") in features.columns
    assert "000002-30" in features.index.astype(str)
