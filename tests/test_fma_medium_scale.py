"""What the study needs at FMA-medium size: the features-only demo of that shape (counts,
features) and FMA's features.csv parsed once for all grid cells."""

import os

import numpy as np
import pandas as pd

from mattlib import cli
from mattlib.data import demo, fma


def test_counts_are_fma_medium_per_split():
    counts = demo._medium_counts()
    assert list(counts) == list(demo.FMA_MEDIUM_TRAINING_COUNTS)
    assert {g: c["training"] for g, c in counts.items()} == demo.FMA_MEDIUM_TRAINING_COUNTS
    for split, total in demo.FMA_MEDIUM_SPLITS.items():
        assert sum(c[split] for c in counts.values()) == total
    assert min(min(c["validation"], c["test"]) for c in counts.values()) >= 2
    assert counts["Rock"]["test"] > counts["Jazz"]["test"] > counts["Easy Listening"]["test"]


def test_features_carry_genre_and_album_signal():
    rng = np.random.default_rng(0)
    genres = ["Rock", "Jazz"]
    manifest = pd.DataFrame(
        {
            "genre": np.repeat(genres, 400),
            "crossover_genre": np.repeat(genres[::-1], 400),
            "crossover_weight": 0.0,
            "album_id": np.repeat(np.arange(160), 5),
        }
    )
    columns = fma.fma518_columns()
    x = demo._medium_features(manifest, columns, seed=0)
    assert x.shape == (800, 518) and x.dtype == np.float32 and np.isfinite(x).all()
    z = (x - x.mean(0)) / x.std(0)
    rock, jazz = z[:400].mean(0), z[400:].mean(0)
    mfcc = columns.get_level_values("feature") == "mfcc"
    # 400 tracks per genre: noise of a mean ~0.05 sd; the MFCC genre centres differ by ~0.2 sd
    assert np.abs(rock - jazz)[mfcc].mean() > 0.1
    # tracks of one album are closer to each other than to other albums' tracks of their genre
    within = np.mean([z[a * 5 : (a + 1) * 5].std(0).mean() for a in range(80)])
    across = z[rng.choice(400, size=(80, 5))].std(1).mean()
    assert within < across
    assert np.array_equal(x, demo._medium_features(manifest, columns, seed=0))


def test_cli_features_only_mode_rejects_audio_options(tmp_path, capsys):
    assert cli.main(["demo-data", "--out", str(tmp_path / "x"), "--fma-medium-features", "--tracks", "100"]) == 2
    assert "--fma-medium-features has FMA medium's size and no audio" in capsys.readouterr().err


def test_features_csv_is_parsed_once_then_read_from_its_parquet_copy(tmp_path):
    folder = tmp_path / "fma_metadata"
    folder.mkdir()
    values = np.random.default_rng(0).standard_normal((5, 518))
    fma.write_features(
        folder / "features.csv", pd.DataFrame(values, index=[2, 3, 5, 10, 20], columns=fma.fma518_columns())
    )
    csv = folder / "features.csv"
    first = fma.load_features_cached(csv, cache_dir=tmp_path / "cache")
    copies = list((tmp_path / "cache" / "fma_features").glob("*.parquet"))
    assert len(copies) == 1
    again = fma.load_features_cached(tmp_path, cache_dir=tmp_path / "cache")
    pd.testing.assert_frame_equal(again, fma.load_features(csv), check_exact=True)
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    # a changed csv is parsed again, never served from the stale copy
    text = csv.read_text().replace("\n2,", "\n4,", 1)
    csv.write_text(text)
    os.utime(csv, ns=(1, 1))
    assert 4 in fma.load_features_cached(csv, cache_dir=tmp_path / "cache").index
    assert len(list((tmp_path / "cache" / "fma_features").glob("*.parquet"))) == 2
