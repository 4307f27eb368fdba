"""Attention you can judge: raw scores recovered from softmax weights, the three views, entropy,
every pooling's weights for one bag read from a run's attention.json files."""

import json

import numpy as np
import pandas as pd
import pytest

from mattlib.study.experiment import raw_scores
from mattlib.views import attention


def test_raw_scores_are_the_softmax_inputs_up_to_their_bag_mean():
    e = np.array([[0.3, -0.9, 0.8, 0.1], [2.0, 2.0, 2.0, 2.0]])
    w = np.exp(e) / np.exp(e).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(raw_scores(w), e - e.mean(axis=1, keepdims=True), atol=1e-12)


def _bag(bag_id, weights, *, queries=("bag",), pred="Rock", true="Rock"):
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    return {
        "bag_id": bag_id,
        "split": "test",
        "true_genre": true,
        "pred_genre": pred,
        "scores": [0.7, 0.3],
        "tracks": list(range(w.shape[1])),
        "track_genres": [true] * w.shape[1],
        "queries": list(queries),
        "attention": w.tolist(),
        "raw": raw_scores(w).tolist(),
    }


def test_views_and_entropy():
    bag = _bag("b", [[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]], queries=("Rock", "Pop"), pred="Pop")
    assert attention.bag_weights(bag).tolist() == [0.2, 0.3, 0.5]  # the predicted genre's query
    assert attention.bag_weights(bag, "Rock").tolist() == [0.7, 0.2, 0.1]
    raw = attention.bag_weights(bag, "Rock", view="raw")
    assert raw.sum() == pytest.approx(0) and np.argmax(raw) == 0
    assert attention.bag_weights(bag, "Rock", view="min-max").tolist() == pytest.approx(
        [1.0, (np.log(2) - np.log(1)) / np.log(7), 0.0]
    )
    uniform = _bag("u", [0.25] * 4)
    assert attention.bag_weights(uniform, view="min-max").tolist() == [0.5] * 4
    assert attention.entropy([0.25] * 4) == 1.0 and attention.entropy([1.0, 0, 0]) == 0.0
    assert np.isnan(attention.entropy([1.0]))
    # paper-form MATT: scores in (-1, 1) bound the weights within e^2, so entropy stays high
    e = np.r_[1.0, -np.ones(9)]
    assert attention.entropy(np.exp(e) / np.exp(e).sum()) > 0.8  # the most peaked bag of 10: 0.82
    with pytest.raises(ValueError, match="unknown view 'log'; valid: softmax, raw, min-max"):
        attention.bag_weights(bag, view="log")


def test_every_pooling_side_by_side_from_a_run(tmp_path):
    def cell(name, label, seed, bags):
        folder = tmp_path / "05_matt" / name
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"feature_set": "all", "seed": seed, "notebook": "05_matt"}))
        (folder / "attention.json").write_text(json.dumps({"classes": ["Rock", "Pop"], "model": label, "bags": bags}))

    cell("mil-0", "MLP+MIL", 0, [_bag("b", [1 / 3] * 3), _bag("c", [0.5, 0.5])])
    cell("mil-1", "MLP+MIL", 1, [_bag("b", [0.9, 0.05, 0.05])])  # a later seed is not shown
    cell("matt-0", "MLP+MATT", 0, [_bag("b", [[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]], queries=("Rock", "Pop"), pred="Pop")])
    models = attention.load_attention(tmp_path)
    assert list(models) == ["MLP+MATT", "MLP+MIL"]
    fig = attention.side_by_side_figure(models, "b", view="softmax")
    assert len(fig.data) == 3  # MATT: true and predicted queries; MIL: one
    assert list(fig.data[2].y) == pytest.approx([1 / 3] * 3)
    table = attention.entropy_table(models)
    assert table.set_index(["model", "bag_id"]).loc[("MLP+MIL", "b"), "entropy"] == pytest.approx(1.0)
    assert len(attention.entropy_figure(table).data) == 2
    with pytest.raises(ValueError, match="no bag model of this run has test bag 'zz'"):
        attention.side_by_side_figure(models, "zz")


def test_recovery_scores_attention_against_the_tracks_that_carry_the_genre():
    carries = pd.Series({1: True, 2: False, 3: False})

    def bags(weights):
        return [{"tracks": [1, 2, 3], "queries": ["bag"], "true_genre": "Rock", "attention": [weights]}] * 20

    found = attention.recovery(bags([0.8, 0.1, 0.1]), carries, n_boot=200)
    assert found["auc"]["mean"] == 1.0 and found["share_above_uniform"]["mean"] == pytest.approx(0.8 - 1 / 3)
    uniform = attention.recovery(bags([1 / 3] * 3), carries, n_boot=200)
    assert uniform["auc"]["mean"] == 0.5 and uniform["share_above_uniform"]["mean"] == pytest.approx(0.0)
    wrong = attention.recovery(bags([0.0, 0.5, 0.5]), carries, n_boot=200)
    assert wrong["auc"]["mean"] == 0.0 and wrong["auc"]["ci_high"] == 0.0  # can fail: the wrong tracks
    single = attention.recovery(
        [{"tracks": [1], "queries": ["bag"], "true_genre": "Rock", "attention": [[1]]}], carries
    )
    assert single["auc"]["bags"] == 0 and single["auc"]["mean"] is None
