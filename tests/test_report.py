"""The report on a hand-made run folder: models grouped by configuration (never leftover cells as
extra seeds), intervals of the seed mean over seeds and albums, "not estimable" on few albums,
paired tail comparisons computed from the saved per-track scores, Holm over every row, the paper's
Table II row only beside the features the paper used."""

import json

import numpy as np
import pandas as pd
import pytest

from mattlib.evaluation import uncertainty as unc
from mattlib.views import report, runs, verdict

GENRES = ["Rock", "Pop", "Blues"]
N_ALBUMS = 12


def _tracks() -> pd.DataFrame:
    """12 albums of 2 tracks; albums 0-3 are Blues (the tail), the rest Rock / Pop."""
    album = np.repeat(np.arange(N_ALBUMS), 2)
    genre = np.where(album < 4, "Blues", np.where(album % 2, "Pop", "Rock"))
    return pd.DataFrame(
        {
            "track_id": np.arange(len(album)) + 100,
            "bag_id": [f"b{a}" for a in album],
            "genre": genre,
            "bag_genre": genre,
            "album": [f"a{a}-r1" for a in album],
        }
    )


def _scores(tracks: pd.DataFrame, right: np.ndarray) -> np.ndarray:
    """Scores that rank the true genre first where ``right``, second (after Rock or Pop) else."""
    idx = tracks["genre"].map({g: i for i, g in enumerate(GENRES)}).to_numpy()
    scores = np.full((len(tracks), 3), 0.1)
    scores[np.arange(len(tracks)), idx] = np.where(right, 0.8, 0.3)
    wrong = np.where(idx == 0, 1, 0)
    scores[np.arange(len(tracks)), wrong] = np.where(right, 0.1, 0.6)
    return scores


def _write_cell(run, notebook, cell, feature_set, seed, label, right, *, params=None):
    folder = run / notebook / cell
    folder.mkdir(parents=True)
    tracks = _tracks()
    scores = _scores(tracks, right)
    table = tracks.assign(label=label, evaluation="bags", seed=seed)
    table = pd.concat([table, pd.DataFrame(scores, columns=GENRES)], axis=1)
    table.to_csv(folder / "test_scores.csv", index=False)
    acc = float(np.mean(right))
    entry = {
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
            "n_bags": N_ALBUMS,
            "n_albums": N_ALBUMS,
            "top_k": {"<100": {"2": 1.0, "3": 1.0, "5": 1.0}},
            "tail_support": {"<100": 8},
            "tail_album_support": {"<100": 4},
            "tail_sets": {"<100": ["Blues"], "<200": ["Blues"]},
            "groups": {"head": ["Rock", "Pop"], "medium": [], "tail": ["Blues"]},
        },
    }
    data = {
        "results": [entry],
        "params": {"model": "mlp", "seed": seed, **(params or {})},
        "train_counts": {"Rock": 50, "Pop": 40, "Blues": 5},
        "train_bag_counts": {"Rock": 20, "Pop": 15, "Blues": 3},
    }
    (folder / "metrics.json").write_text(json.dumps(data))


RIGHT = {  # label -> seed -> per-track correctness (24 tracks)
    "MLP+MATT": {s: (np.arange(24) % (3 + s)) != 0 for s in range(3)},
    "MLP+MIL": {s: (np.arange(24) % (2 + s)) != 0 for s in range(3)},
    "MLP (torch)+late": {s: (np.arange(24) % 2) == s % 2 for s in range(3)},
}


@pytest.fixture
def run_dir(tmp_path):
    for label, by_seed in RIGHT.items():
        for seed, right in by_seed.items():
            cell = f"{label.replace(' ', '').replace('+', '_')}-{seed}"
            _write_cell(tmp_path, "05_matt", cell, "all", seed, label, right)
    _write_cell(tmp_path, "03_baselines", "all-lr", "all", 0, "LR", np.ones(24, bool))
    return tmp_path


def _paired(path, **kwargs):
    frame = report.collect(path)
    return verdict.paired_table(runs.load_scores(frame), runs.run_context(path), n_boot=300, **kwargs)


def test_paired_differences_are_computed_from_the_per_track_scores(run_dir):
    paired = _paired(run_dir)
    assert set(paired["comparison"]) == {
        "MLP+MATT − MLP+MIL",
        "MLP+MATT − MLP (torch)+late",
        "MLP+MIL − MLP (torch)+late",
    }
    row = paired[(paired["comparison"] == "MLP+MATT − MLP+MIL") & (paired["metric"] == "accuracy")].iloc[0]
    per_seed = [np.mean(RIGHT["MLP+MATT"][s]) - np.mean(RIGHT["MLP+MIL"][s]) for s in range(3)]
    assert row["difference"] == pytest.approx(100 * np.mean(per_seed))
    assert (row["seeds_a"], row["seeds_b"], row["items"], row["albums"]) == (3, 3, 24, 12)
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    # Top@2 on the tail: the wrong tail tracks rank Blues second, so every model's Top@2 is 100 %
    top2 = paired[(paired["metric"] == "top2 <100") & (paired["level"] == "track")]
    assert (top2["difference"] == 0).all() and (top2["albums"] == 4).all()
    # ... on 4 albums: not estimable, never a zero-width interval
    assert top2["ci_low"].isna().all() and top2["note"].str.startswith("not estimable (4 albums").all()
    # bag-level rows for bag models and late fusion
    assert {"track", "bag"} <= set(paired.loc[paired["comparison"] == "MLP+MATT − MLP+MIL", "level"])


def test_holm_runs_over_the_headline_family_and_over_every_row(run_dir):
    paired = _paired(run_dir, min_albums=2)
    # the models agree on every tail track at Top@2: no interval, never a zero-width one
    agree = paired[(paired["metric"] == "top2 <100") & (paired["level"] == "track")]
    assert agree["ci_low"].isna().all() and agree["note"].str.contains("agree on all 8 items").all()
    estimable = paired[paired["p"].notna()]
    assert np.allclose(estimable["p_holm_all"], unc.holm(estimable["p"]))
    head = paired[paired["headline"] & paired["p"].notna()]
    assert 0 < len(head) < len(estimable)
    assert np.allclose(head["p_holm"], unc.holm(head["p"]))
    assert paired.loc[~paired["headline"], "p_holm"].isna().all()
    assert (estimable["p_holm_all"] >= estimable["p"]).all()
    text = verdict.verdict_text(paired, known={"MATT − MIL": "+"}, known_answer="attention helps")
    assert f"The report makes {len(paired)} paired comparisons ({len(estimable)} with an interval)" in text
    assert "MATT − MIL planted +: " in text and "Known answer of this dataset: attention helps" in text
    assert "(MLP+MATT − MLP+MIL [all]): accuracy " in text  # each feature set's rows say which they are


def test_table_intervals_cover_seeds_and_albums_not_the_mean_of_seed_bounds(run_dir):
    frame = report.collect(run_dir)
    models = runs.load_scores(frame)
    stats = report.seed_album_intervals(models, runs.run_context(run_dir), n_boot=300)
    t1 = report.table1(frame, stats).set_index(["feature_set", "model"])
    matt = t1.loc[("all", "MLP+MATT")]
    assert matt["n_seeds"] == 3
    assert matt["accuracy"] == pytest.approx(100 * np.mean([np.mean(RIGHT["MLP+MATT"][s]) for s in range(3)]))
    expected = verdict.model_intervals(models[("all", "MLP+MATT", "bags")], runs.run_context(run_dir), n_boot=300)
    assert (matt["ci_low"], matt["ci_high"]) == (expected["accuracy"]["ci_low"], expected["accuracy"]["ci_high"])
    lr = t1.loc[("all", "LR")]
    assert np.isnan(lr["ci_low"]) and lr["accuracy"] == 100.0  # right on every album: no bootstrap interval
    assert (lr["test_tracks"], lr["test_albums"]) == (24, 12)
    t2 = report.table2(frame, stats).set_index(["feature_set", "model"])
    assert t2.loc[("all", "LR"), "published <100 top3"] == "7.06"  # the paper used all 518 features
    assert t2.loc[("all", "MLP+MATT"), "ours <100 top2 CI"] == "not estimable (4 albums)"
    assert t2.loc[("all", "MLP+MATT"), "ours <100 albums"] == 4


def test_cells_differing_in_more_than_the_seed_are_separate_models(run_dir):
    right = RIGHT["MLP+MATT"][0]
    _write_cell(run_dir, "05_matt", "matt-lr3e-3", "all", 0, "MLP+MATT", right, params={"lr": 0.003})
    labels = set(report.collect(run_dir)["label"])
    assert "MLP+MATT [lr=0.003]" in labels and "MLP+MATT [lr=None]" in labels
    frame = report.collect(run_dir)
    assert (frame.loc[frame["label"] == "MLP+MATT [lr=0.003]", "seed"] == 0).all()


def test_two_cells_of_one_configuration_and_seed_are_an_error(run_dir):
    _write_cell(run_dir, "05_matt", "leftover", "all", 1, "MLP+MIL", RIGHT["MLP+MIL"][1])
    with pytest.raises(runs.ReportError, match=r"MLP\+MIL \[all\] with the same configuration and seed 1: .*leftover"):
        report.collect(run_dir)
    # a report restricted to the params file's cells does not read the leftover
    cells = [p for p in (run_dir / "05_matt").iterdir() if p.name != "leftover"]
    assert "LR" not in set(report.collect(run_dir, cells=cells)["label"])
    assert len(report.collect(run_dir, cells=cells)) == 9


def test_forest_plot_marks_rows_and_lists_not_estimable_ones(run_dir):
    paired = _paired(run_dir)
    fig = verdict.forest_figure(paired)
    rows = verdict.forest_rows(paired)
    assert len(fig.data[0].y) == len(rows) > 0
    assert "n/e" in list(fig.data[0].text)  # the tail rows: 4 albums
    assert fig.layout.shapes[0].x0 == 0  # the zero line
