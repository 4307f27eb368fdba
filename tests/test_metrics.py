"""Metrics: Top@K, micro PR / AP against hand computations and scikit-learn, evaluate()."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_curve,
    top_k_accuracy_score,
)

from mattlib.data.bags import singletons
from mattlib.evaluation.metrics import (
    average_precision_micro,
    evaluate,
    macro_f1,
    micro_pr_curve,
    top_k_accuracy,
)
from mattlib.evaluation.resampling import paired_difference, resampling_units
from mattlib.evaluation.tails import PAPER_TAIL_SETS, frequency_groups, tail_sets


def test_top_k_hand_case():
    scores = np.array(
        [
            [0.5, 0.3, 0.1, 0.1],  # true 1: rank 2
            [0.1, 0.2, 0.3, 0.4],  # true 0: rank 4
            [0.2, 0.5, 0.25, 0.05],  # true 2: rank 2
            [0.7, 0.1, 0.1, 0.1],  # true 0: rank 1
        ]
    )
    y = np.array([1, 0, 2, 0])
    assert top_k_accuracy(y, scores, k=1) == 0.25
    assert top_k_accuracy(y, scores, k=2) == 0.75
    assert top_k_accuracy(y, scores, k=4) == 1.0
    # restricted to the "tail" genres {1, 2}: items 0 and 2, both rank 2
    assert top_k_accuracy(y, scores, k=1, restrict_to=[1, 2]) == 0.0
    assert top_k_accuracy(y, scores, k=2, restrict_to=[1, 2]) == 1.0
    assert top_k_accuracy(y, scores, k=2, restrict_to=[3]) is None


def test_top_k_matches_sklearn():
    rng = np.random.default_rng(0)
    scores = rng.random((200, 8))
    y = rng.integers(0, 8, 200)
    for k in (2, 3, 5):
        assert top_k_accuracy(y, scores, k=k) == pytest.approx(top_k_accuracy_score(y, scores, k=k, labels=range(8)))
        tail = np.isin(y, [5, 6, 7])
        assert top_k_accuracy(y, scores, k=k, restrict_to=[5, 6, 7]) == pytest.approx(
            top_k_accuracy_score(y[tail], scores[tail], k=k, labels=range(8))
        )


def test_micro_ap_hand_case():
    # 2 items x 2 genres; ranked pairs: 0.9 (+), 0.6 (-), 0.4 (+), 0.1 (-)
    scores = np.array([[0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 1])
    # precision at the positives: 1/1 and 2/3, each recall step 1/2
    assert average_precision_micro(y, scores) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    p, r, t = micro_pr_curve(y, scores)
    np.testing.assert_allclose(p, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 1.0, 0.5, 0.5, 0.0])
    np.testing.assert_allclose(t, [0.1, 0.4, 0.6, 0.9])


def test_micro_pr_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((120, 6)), 2)  # many ties
    y = rng.integers(0, 6, 120)
    onehot = np.eye(6)[y]
    assert average_precision_micro(y, scores) == pytest.approx(average_precision_score(onehot, scores, average="micro"))
    ours = micro_pr_curve(y, scores)
    theirs = precision_recall_curve(onehot.ravel(), scores.ravel(), drop_intermediate=False)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b)


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 5, 100), rng.integers(0, 4, 100)
    assert macro_f1(y, p, 6) == pytest.approx(f1_score(y, p, average="macro"))


def test_tail_sets_and_groups():
    counts = {
        "Rock": 5000,
        "Pop": 900,
        "Country": 150,
        "International": 700,
        "Blues": 60,
        "Soul-RnB": 90,
        "Spoken": 95,
        "Easy Listening": 15,
    }
    sets = tail_sets(counts)
    assert sets["<100"] == ["Easy Listening", "Blues", "Soul-RnB", "Spoken"]
    assert sets["<200"] == ["Easy Listening", "Blues", "Soul-RnB", "Spoken", "Country"]
    assert tail_sets(counts, thresholds={"<100": 20, "<200": 65}) == {
        "<100": ["Easy Listening"],
        "<200": ["Easy Listening", "Blues"],
    }
    assert list(tail_sets(counts, thresholds=(12.5,))) == ["<12.5"]
    assert "International" in PAPER_TAIL_SETS["<100"]
    assert set(PAPER_TAIL_SETS["<200"]) == set(PAPER_TAIL_SETS["<100"]) | {"Country"}
    groups = frequency_groups(counts, head_min=1000, tail_max=200)
    assert groups["head"] == ["Rock"]
    assert groups["medium"] == ["Pop", "International"]
    assert set(groups["tail"]) == set(sets["<200"])


def _toy():
    """Two album bags and a single; genres A (head), B, C (tail)."""
    membership = pd.DataFrame(
        {
            "bag_id": ["x", "x", "x", "y", "y", "z"],
            "track_id": [1, 2, 3, 4, 5, 6],
            "split": ["test"] * 6,
            "genre": ["A", "A", "B", "C", "C", "B"],
            "bag_genre": ["A", "A", "A", "C", "C", "B"],
            "bag_size": [3, 3, 3, 2, 2, 1],
        }
    )
    scores = np.array(
        [
            [0.6, 0.3, 0.1],  # x -> A (2 of 3 tracks right)
            [0.5, 0.1, 0.4],  # y -> A (wrong; C second)
            [0.2, 0.7, 0.1],
        ]
    )  # z -> B (right)
    return membership, scores


def test_evaluate_hand_case_and_json():
    membership, scores = _toy()
    counts = {"A": 2000, "B": 150, "C": 50}
    out = evaluate(
        bag_ids=["x", "y", "z"],
        scores=scores,
        membership=membership,
        classes=["A", "B", "C"],
        train_counts=counts,
        ks=(1, 2, 3, 5),
        n_boot=200,
        seed=0,
        include_pr_curve=True,
    )
    json.dumps(out)  # serialisable
    assert out["n_bags"] == 3 and out["n_tracks"] == 6
    assert out["track_accuracy"] == pytest.approx(3 / 6)
    assert out["bag_accuracy"] == pytest.approx(2 / 3)
    y = np.array([0, 0, 1, 2, 2, 1])
    p = np.array([0, 0, 0, 0, 0, 1])
    assert out["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert out["per_genre_recall"] == {"A": 1.0, "B": 0.5, "C": 0.0}
    track_scores = scores[[0, 0, 0, 1, 1, 2]]
    assert out["average_precision"] == pytest.approx(
        average_precision_score(np.eye(3)[y], track_scores, average="micro")
    )
    # tail sets from counts: <100 = {C}, <200 = {C, B}
    assert out["tail_sets"]["<100"] == ["C"] and out["tail_sets"]["<200"] == ["C", "B"]
    assert out["top_k"]["<100"]["2"] == 1.0  # both C tracks have C second
    assert out["top_k"]["<200"]["1"] == pytest.approx(1 / 4)  # only track 6 (B, bag z) is top-1
    assert out["top_k"]["<200"]["2"] == 1.0
    assert out["tail_support"] == {"<100": 2, "<200": 4, "paper<100": 0, "paper<200": 0}
    assert out["top_k"]["paper<100"]["2"] is None  # no paper genre among A, B, C
    assert out["group_recall"] == {"head": 1.0, "medium": None, "tail": 0.25}  # B, C < 200
    lo, hi = out["ci"]["track_accuracy"]
    assert 0 <= lo <= out["track_accuracy"] <= hi <= 1
    assert out["pr_curve"]["recall"][-1] == 0.0


def test_case_study_bags_of_one():
    membership, _ = _toy()
    single = singletons(membership)
    assert list(single["bag_id"]) == ["te:t1", "te:t2", "te:t3", "te:t4", "te:t5", "te:t6"]
    assert (single["bag_genre"] == single["genre"]).all() and (single["bag_size"] == 1).all()
    scores = np.tile([0.2, 0.5, 0.3], (6, 1))
    out = evaluate(
        bag_ids=list(single["bag_id"]),
        scores=scores,
        membership=single,
        classes=["A", "B", "C"],
        train_counts={"A": 2000, "B": 150, "C": 50},
        n_boot=0,
    )
    assert out["track_accuracy"] == out["bag_accuracy"] == pytest.approx(2 / 6)
    assert "ci" not in out


def test_bootstrap_is_seeded():
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    units = np.arange(len(values))  # one unit per value: the weighted mean of a resample

    def ci(seed):
        out = paired_difference(values, np.zeros_like(values), units, n_boot=300, seed=seed)
        return out["low"], out["high"]

    a = ci(3)
    assert a == ci(3)
    assert a != ci(4)
    assert a[0] < values.mean() < a[1]


def test_top_k_counts_ties_against_the_true_genre():
    """kNN-like flat scores: a true genre tied with others is not "in the top K" for free."""
    scores = np.array(
        [
            [0.25, 0.25, 0.25, 0.25],  # four-way tie: rank 4
            [0.5, 0.5, 0.0, 0.0],  # two-way tie for first: rank 2
            [0.6, 0.2, 0.2, 0.0],
        ]
    )  # true 1 tied with 2 behind 0: rank 3
    y = np.array([0, 1, 1])
    assert top_k_accuracy(y, scores, k=1) == 0.0
    assert top_k_accuracy(y, scores, k=2) == pytest.approx(1 / 3)
    assert top_k_accuracy(y, scores, k=3) == pytest.approx(2 / 3)
    assert top_k_accuracy(y, scores, k=4) == 1.0


def test_weighted_micro_ap_matches_sklearn_sample_weight():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 5, 60)
    scores = np.round(rng.random((60, 5)), 1)  # many ties
    weights = rng.integers(0, 4, 60).astype(float)
    expected = average_precision_score(np.eye(5)[y], scores, average="micro", sample_weight=weights)
    assert average_precision_micro(y, scores, sample_weight=weights) == pytest.approx(expected, rel=1e-12)


def _albums_all_or_nothing(n_albums=30, size=6, seed=0):
    """Singleton test tracks of a track-level model, right or wrong album by album."""
    rng = np.random.default_rng(seed)
    right = rng.random(n_albums) < 0.6
    rows, scores = [], []
    for a in range(n_albums):
        for i in range(size):
            rows.append(
                {
                    "bag_id": f"t{a}-{i}",
                    "track_id": a * size + i,
                    "split": "test",
                    "genre": "A",
                    "bag_genre": "A",
                    "album_id": a,
                    "artist_id": 100 + a,
                    "bag_size": 1,
                }
            )
            scores.append([0.7, 0.3] if right[a] else [0.3, 0.7])
    return pd.DataFrame(rows), np.array(scores)


def test_bootstrap_resamples_albums_for_track_level_models():
    """Tracks of one album are not independent: resampling them one by one (no album columns)
    gives a CI about sqrt(album size) too narrow; every model is resampled by album."""
    membership, scores = _albums_all_or_nothing()
    kwargs = {
        "bag_ids": list(membership["bag_id"]),
        "scores": scores,
        "classes": ["A", "B"],
        "train_counts": {"A": 10, "B": 10},
        "n_boot": 1000,
        "seed": 0,
    }
    by_album = evaluate(membership=membership, **kwargs)
    by_track = evaluate(membership=membership.drop(columns=["album_id", "artist_id"]), **kwargs)
    assert by_album["n_albums"] == 30 and by_album["ci_replicates"] == 1000
    widths = [out["ci"]["track_accuracy"][1] - out["ci"]["track_accuracy"][0] for out in (by_album, by_track)]
    assert widths[0] > 1.8 * widths[1]  # sqrt(6) = 2.4 in expectation
    assert list(resampling_units(membership.iloc[[0, 5, 6]])) == ["a0-r100", "a0-r100", "a1-r101"]


def test_evaluate_gives_cis_for_ap_and_top_k_and_album_support():
    membership, scores = _toy()
    membership = membership.assign(album_id=[7, 7, 7, 8, 8, -1], artist_id=[1, 1, 1, 2, 2, 3])
    out = evaluate(
        bag_ids=["x", "y", "z"],
        scores=scores,
        membership=membership,
        classes=["A", "B", "C"],
        train_counts={"A": 2000, "B": 150, "C": 50},
        ks=(1, 2),
        n_boot=300,
        seed=0,
    )
    assert out["n_albums"] == 3  # the album-less track is its own unit
    assert out["tail_album_support"] == {"<100": 1, "<200": 3, "paper<100": 0, "paper<200": 0}
    lo, hi = out["ci"]["average_precision"]
    assert lo <= out["average_precision"] <= hi
    for k in ("1", "2"):
        lo, hi = out["ci"][f"top_k|<200|{k}"]
        assert lo <= out["top_k"]["<200"][k] <= hi
    assert "top_k|paper<100|1" not in out["ci"]  # empty tail set: no interval


def test_paired_difference_resamples_albums_for_both_models():
    rng = np.random.default_rng(0)
    units = np.repeat(np.arange(40), 5)
    a = (rng.random(40) < 0.7)[units].astype(float)
    same = paired_difference(a, a, units, n_boot=500)
    assert same["difference"] == 0.0 and same["low"] == same["high"] == 0.0
    b = a.copy()
    b[units < 4] = 1 - b[units < 4]  # B differs from A on 4 albums only
    out = paired_difference(a, b, units, n_boot=1000, seed=1)
    assert out["difference"] == pytest.approx((a - b).mean())
    assert out["low"] <= out["difference"] <= out["high"] and out["n_units"] == 40
    # paired: the spread comes from the 4 discordant albums, far narrower than combining the
    # two models' own intervals as if they were independent
    own = [paired_difference(x, np.zeros_like(x), units, n_boot=1000, seed=1) for x in (a, b)]
    independent = np.hypot(*[o["high"] - o["low"] for o in own])
    assert out["high"] - out["low"] < 0.6 * independent
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference(a, b[:-1], units)


def test_a_replicate_without_tail_albums_leaves_top_k_undefined_not_zero():
    """One tail album of ten, right at Top@2: the interval is [100, 100], never [0, 100]."""
    membership, scores = _toy()
    membership = membership.assign(album_id=[7, 7, 7, 8, 8, -1], artist_id=[1, 1, 1, 2, 2, 3])
    out = evaluate(
        bag_ids=["x", "y", "z"],
        scores=scores,
        membership=membership,
        classes=["A", "B", "C"],
        train_counts={"A": 2000, "B": 150, "C": 50},
        n_boot=300,
        seed=0,
    )
    assert out["top_k"]["<100"]["2"] == 1.0 and out["tail_album_support"]["<100"] == 1
    assert out["ci"]["top_k|<100|2"] == [1.0, 1.0]


def test_evaluate_gives_bag_level_top_k_and_one_vs_rest_ap():
    membership, scores = _toy()
    out = evaluate(
        bag_ids=["x", "y", "z"],
        scores=scores,
        membership=membership,
        classes=["A", "B", "C"],
        train_counts={"A": 2000, "B": 150, "C": 50},
        n_boot=0,
    )
    assert out["bag_top_k"]["<100"]["2"] == 1.0  # bag y (C) has C second
    assert out["bag_top_k"]["<200"]["2"] == 1.0 and out["bag_top_k"]["<100"]["3"] == 1.0
    y = np.array([0, 0, 1, 2, 2, 1])
    track_scores = scores[[0, 0, 0, 1, 1, 2]]
    for i, genre in enumerate("ABC"):
        assert out["per_genre_ap"][genre] == pytest.approx(average_precision_score(y == i, track_scores[:, i]))
    assert out["macro_ap"] == pytest.approx(np.mean(list(out["per_genre_ap"].values())))
