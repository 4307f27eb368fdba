"""The report's tables on a hand-made run folder: CIs and support in Tables I / II, the paper's
Table II row only beside the features the paper used, paired comparisons on the same albums."""

import json

import numpy as np
import pandas as pd
import pytest

from mattlib.evaluation.metrics import paired_difference
from mattlib.views import report

GENRES = ["Rock", "Pop"]


def _write_cell(run, notebook, cell, feature_set, seed, models, tracks):
    """models: label -> per-track correctness (0/1); writes metrics.json + predictions.csv."""
    folder = run / notebook / cell
    folder.mkdir(parents=True)
    preds = tracks.copy()
    results = []
    for label, right in models.items():
        preds[f"pred {label}"] = np.where(right == 1, preds["genre"], "Jazz")
        acc = float(np.mean(right))
        results.append(
            {
                "label": label,
                "feature_set": feature_set,
                "model": "mlp",
                "pooling": "x",
                "seed": seed,
                "evaluation": "bags",
                "pr_curve": None,
                "summary": {
                    "accuracy": acc,
                    "track_accuracy": acc,
                    "bag_accuracy": acc,
                    "n_tracks": len(tracks),
                    "n_bags": 4,
                    "n_albums": 4,
                    "ci": {"track_accuracy": [acc - 0.1, acc + 0.1], "top_k|<100|2": [0.2, 0.6]},
                    "top_k": {"<100": {"2": 0.4, "3": 0.5, "5": 0.9}},
                    "tail_support": {"<100": 3},
                    "tail_album_support": {"<100": 2},
                },
            }
        )
    preds.to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"results": results, "train_counts": {}}))


@pytest.fixture
def run_dir(tmp_path):
    tracks = pd.DataFrame(
        {
            "track_id": range(8),
            "bag_id": [f"b{i // 2}" for i in range(8)],
            "genre": ["Rock", "Pop"] * 4,
            "bag_genre": "Rock",
            "album": [f"a{i // 2}" for i in range(8)],
        }
    )
    right = {  # seed -> label -> correctness per track
        0: {
            "MLP+MATT": [1, 1, 1, 1, 0, 0, 1, 1],
            "MLP+MIL": [1, 1, 0, 0, 0, 0, 1, 1],
            "MLP (torch)+late": [1, 0, 0, 0, 0, 0, 1, 1],
        },
        1: {
            "MLP+MATT": [1, 1, 1, 1, 1, 1, 1, 1],
            "MLP+MIL": [1, 1, 1, 1, 0, 0, 1, 1],
            "MLP (torch)+late": [1, 0, 1, 0, 0, 0, 1, 1],
        },
    }
    for seed, models in right.items():
        for label, values in models.items():
            cell = f"{label.replace(' ', '').replace('+', '_')}-{seed}"
            _write_cell(tmp_path, "05_matt", cell, "all", seed, {label: np.array(values)}, tracks)
    _write_cell(tmp_path, "03_baselines", "mfcc-lr", "mfcc", 0, {"LR": np.ones(8)}, tracks)
    _write_cell(tmp_path, "03_baselines", "all-lr", "all", 0, {"LR": np.ones(8)}, tracks)
    return tmp_path, right, tracks


def test_paired_comparisons_on_the_same_albums(run_dir):
    path, right, tracks = run_dir
    paired = report.paired_comparisons(report.collect(path), n_boot=500)
    rows = paired.set_index("comparison")
    assert set(rows.index) == {"MLP+MATT − MLP+MIL", "MLP+MATT − MLP (torch)+late", "MLP+MIL − MLP (torch)+late"}
    row = rows.loc["MLP+MATT − MLP+MIL"]
    per_seed = [np.mean(np.subtract(right[s]["MLP+MATT"], right[s]["MLP+MIL"])) * 100 for s in (0, 1)]
    assert row["difference"] == pytest.approx(np.mean(per_seed))
    assert row["seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert (row["n_seeds"], row["test_tracks"], row["test_albums"]) == (2, 8, 4)
    assert (row["a_wins"], row["b_wins"]) == (4, 0)
    a = np.mean([right[s]["MLP+MATT"] for s in (0, 1)], axis=0)
    b = np.mean([right[s]["MLP+MIL"] for s in (0, 1)], axis=0)
    expected = paired_difference(a, b, tracks["album"], n_boot=500)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((100 * expected["low"], 100 * expected["high"]))


def test_tables_show_intervals_support_and_the_paper_only_where_it_applies(run_dir):
    path, _, _ = run_dir
    frame = report.collect(path)
    t1 = report.table1(frame).set_index(["feature_set", "model"])
    lr = t1.loc[("mfcc", "LR")]
    assert (lr["ci_low"], lr["ci_high"]) == pytest.approx((90.0, 110.0))
    assert (lr["test_tracks"], lr["test_albums"]) == (8, 4)
    assert "[90, 110]" in report.table1_wide(report.table1(frame)).set_index("feature_set").loc["mfcc", "LR"]
    t2 = report.table2(frame).set_index(["feature_set", "model"])
    assert t2.loc[("all", "LR"), "published <100 top3"] == "7.06"  # the paper used all 518 features
    assert t2.loc[("mfcc", "LR"), "published <100 top3"] == ""
    assert t2.loc[("all", "MLP+MATT"), "ours <100 tracks"] == 3
    assert t2.loc[("all", "MLP+MATT"), "ours <100 albums"] == 2
    assert t2.loc[("all", "MLP+MATT"), "ours <100 top2 CI"] == "[20.0, 60.0]"
