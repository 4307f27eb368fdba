"""The dataset seam: FMA and generic collections give the study the same flat tracks table."""

from pathlib import Path

import pandas as pd
import pytest

from mattlib import paths
from mattlib.data import bags, datasets
from mattlib.data.datasets import DatasetError

DATA = Path(__file__).parent / "data"


def _collection(tmp_path: Path) -> Path:
    rows = pd.DataFrame(
        {
            "track_id": [10, 11, 12, 20, 21, 30, 31, 32],
            "album_id": [1, 1, 1, 2, 2, 3, 3, -1],
            "artist_id": [7, 7, 7, 8, 8, 9, 9, 9],
            "genre": ["jazz", "jazz", "jazz", "rock", "rock", "jazz", "rock", "rock"],
            "split": ["training"] * 3 + ["validation"] * 2 + ["test"] * 3,
            "audio": [f"audio/{t}.mp3" for t in [10, 11, 12, 20, 21, 30, 31, 32]],
        }
    )
    datasets.write_collection(tmp_path, rows)
    return tmp_path


def test_fma_root_gives_the_flat_table_bags_read():
    ds = datasets.open_dataset(DATA)
    assert isinstance(ds, datasets.FMADataset)
    flat = ds.tracks(subset="medium")
    assert list(flat.columns) == datasets.FLAT_COLUMNS
    # the same bags as from FMA's own 2-level table
    from mattlib.data import fma

    direct = bags.make_bags(fma.subset_tracks(fma.load_tracks(DATA), "medium"))
    via_seam = bags.make_bags(flat)
    pd.testing.assert_frame_equal(direct, via_seam)
    assert ds.genres()[:2] == ["International", "Blues"]  # FMA's genre-id order


def test_collection_is_detected_and_read(tmp_path):
    root = _collection(tmp_path)
    ds = datasets.open_dataset(root)
    assert isinstance(ds, datasets.CollectionDataset)
    flat = ds.tracks()
    assert flat.index.name == "track_id" and len(flat) == 8
    assert flat.loc[32, "album_id"] == -1
    assert ds.genres() == ["jazz", "rock"]  # training count, largest first; then the rest
    assert ds.audio_paths()[10] == root / "audio" / "10.mp3"
    membership = bags.make_bags(flat)
    test = membership[membership["split"] == "test"]
    # a mixed-genre test album stays one bag; the album-less track is its own bag
    assert test.groupby("bag_id")["genre"].nunique().max() == 2
    assert test["bag_id"].nunique() == 2


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.drop(columns="genre"), "missing column"),
        (lambda t: t.assign(split=["train"] * 8), "unknown value"),
        (lambda t: t.assign(track_id=[10] * 8), "duplicate track_id"),
        (lambda t: t.assign(artist_id=["x"] * 8), "must hold integers"),
    ],
)
def test_bad_collection_is_one_clear_error(tmp_path, mutate, message):
    root = _collection(tmp_path)
    table = pd.read_csv(root / "collection.csv")
    mutate(table).to_csv(root / "collection.csv", index=False)
    with pytest.raises(DatasetError, match=message) as err:
        datasets.open_dataset(root).tracks()
    assert "\n" not in str(err.value)


def test_collection_cut_mid_row_is_refused(tmp_path):
    root = _collection(tmp_path)
    text = (root / "collection.csv").read_text()
    (root / "collection.csv").write_text(text[: len(text) - 20])
    with pytest.raises(DatasetError, match="incomplete"):
        datasets.open_dataset(root).tracks()


def test_no_dataset_names_the_path_and_the_working_directory(tmp_path):
    with pytest.raises(DatasetError, match="working directory") as err:
        datasets.open_dataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_relative_paths_resolve_against_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = paths.project_root()
    assert (root / "pyproject.toml").exists() and (root / "mattlib").is_dir()
    assert paths.resolve("data/demo") == root / "data" / "demo"
    assert paths.resolve(tmp_path) == tmp_path
    monkeypatch.setenv("MATT_HOME", str(tmp_path))
    assert paths.resolve("data/demo") == tmp_path.resolve() / "data" / "demo"
    with pytest.raises(FileNotFoundError, match="working directory"):
        paths.require("data/demo", what="data root", hint="Build it with `matt demo-data`.")
