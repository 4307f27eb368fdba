"""The attention explorer's callbacks, driven from Python as a user would click."""

import numpy as np
import pytest

from mattlib.views import widgets

CLASSES = ["Rock", "Pop", "Jazz"]


def bag(bag_id, true, pred, n, split="test"):
    attention = np.full((3, n), 1.0 / n)
    attention[CLASSES.index(pred)] = np.eye(n)[0]  # the predicted genre's query attends to track 0
    scores = [0.1, 0.1, 0.1]
    scores[CLASSES.index(pred)] = 0.8
    return {
        "bag_id": bag_id,
        "split": split,
        "true_genre": true,
        "pred_genre": pred,
        "scores": scores,
        "tracks": list(range(100 * n, 100 * n + n)),
        "track_genres": [true] * n,
        "queries": CLASSES,
        "attention": attention.tolist(),
    }


DATA = {
    "classes": CLASSES,
    "bags": [bag("a", "Rock", "Rock", 3), bag("b", "Pop", "Jazz", 2), bag("c", "Jazz", "Jazz", 4, split="validation")],
}


def test_filters_change_the_bags_and_the_figure():
    mels = {}
    explorer = widgets.AttentionExplorer(DATA, mel_lookup=lambda t: mels.setdefault(t, np.full((4, 5), float(t))))
    assert len(explorer.visible_bags) == 3
    first = explorer.figure
    assert first.layout.title.text.startswith("bag a")
    # one bar trace (true == predicted) + the genre scores
    assert len(first.data) == 2
    assert list(first.data[0].y) == [1.0, 0.0, 0.0]

    explorer.outcome.value = "wrong"
    assert [b["bag_id"] for b in explorer.visible_bags] == ["b"]
    wrong = explorer.figure
    assert wrong is not first and wrong.layout.title.text.startswith("bag b")
    # true (Pop: uniform) and predicted (Jazz: one-hot) queries side by side
    assert [t.name for t in wrong.data[:2]] == ["query: Pop (true)", "query: Jazz (predicted)"]
    assert list(wrong.data[0].y) == [0.5, 0.5] and list(wrong.data[1].y) == [1.0, 0.0]
    assert explorer.track.options == (200, 201)
    assert explorer.mel_figure.data[0].z[0][0] == 200.0

    explorer.track.value = 201
    assert explorer.mel_figure.data[0].z[0][0] == 201.0
    # what the notebook shows (and saves with the widget state) is the current figure
    assert explorer.chart.layout.title.text.startswith("bag b")
    assert [list(t.y) for t in explorer.chart.data] == [list(t.y) for t in wrong.data]
    heat = explorer.mel_out.outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert heat["layout"]["title"]["text"] == "log-mel of track 201" and heat["data"][0]["type"] == "heatmap"

    explorer.outcome.value = "(all)"
    explorer.split.value = "validation"
    assert explorer.figure.layout.title.text.startswith("bag c")
    explorer.true_genre.value = "Rock"  # no validation bag is Rock
    assert explorer.visible_bags == [] and explorer.figure is None
    assert "0 bag(s)" in explorer.status.value


def click(explorer, point: int, trace: int = 0) -> None:
    """A click on a bar, as the browser's FigureWidget reports it to the kernel."""
    explorer.chart._js2py_pointsCallback = {
        "event_type": "plotly_click",
        "device_state": {"button": 0, "buttons": 1},
        "points": {"trace_indexes": [trace], "point_indexes": [point], "xs": [None], "ys": [0.5]},
    }


def test_clicking_an_attention_bar_selects_its_track():
    explorer = widgets.AttentionExplorer(DATA, mel_lookup=lambda t: np.full((4, 5), float(t)))
    assert explorer.track.value == 300
    click(explorer, 2)
    assert explorer.track.value == 302 and explorer.mel_figure.layout.title.text == "log-mel of track 302"
    click(explorer, 0, trace=1)  # a click on the genre scores selects nothing
    assert explorer.track.value == 302
    explorer.outcome.value = "wrong"  # bag b: bars of the true and the predicted query
    click(explorer, 1, trace=1)
    assert explorer.track.value == 201


def test_audio_loads_on_demand(tmp_path):
    clip = tmp_path / "000100.mp3"
    clip.write_bytes(b"ID3fake-mp3-bytes")
    explorer = widgets.AttentionExplorer(DATA, audio_lookup=lambda t: clip if t == 300 else tmp_path / "none.mp3")
    assert explorer.audio_box.children == ()
    explorer.play.click()  # bag a, first track 300
    assert explorer.audio_box.children[0].value == b"ID3fake-mp3-bytes"
    explorer.track.value = 301
    assert explorer.audio_box.children == ()
    explorer.play.click()
    assert "no audio at" in explorer.audio_box.children[0].value


def test_static_figures_pick_correct_and_wrong_bags():
    figures = widgets.static_attention_figures(DATA, max_bags=2)
    titles = [f.layout.title.text for f in figures]
    assert len(titles) == 2
    assert "(correct)" in titles[0] and "(wrong)" in titles[1]
    html = figures[0].to_html(include_plotlyjs=False)
    assert "attention per track" in html


def test_single_distribution_pooling():
    data = {"classes": CLASSES, "bags": [dict(bag("m", "Rock", "Pop", 2), queries=["bag"], attention=[[0.5, 0.5]])]}
    fig = widgets.bag_attention_figure(data["bags"][0], CLASSES)
    assert fig.data[0].name == "attention" and list(fig.data[0].y) == [0.5, 0.5]


def test_empty_data_is_a_clear_error():
    with pytest.raises(ValueError, match="no bags"):
        widgets.AttentionExplorer({"classes": CLASSES, "bags": []})


def test_the_view_toggle_switches_the_bars_between_softmax_raw_and_min_max():
    raw = [[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [0.0, 0.0, 0.0]]  # Rock, Pop, Jazz queries of bag a
    weights = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    one = dict(bag("a", "Pop", "Pop", 3), attention=weights.tolist(), raw=raw)
    explorer = widgets.AttentionExplorer({"classes": CLASSES, "bags": [one]})
    np.testing.assert_allclose(explorer.chart.data[0].y, weights[1], rtol=1e-12)
    explorer.view.value = "raw"
    assert explorer.chart.layout.title.text.endswith("raw scores e_k (centred)")
    assert list(explorer.chart.data[0].y) == [3.0, 1.0, -1.0]
    explorer.view.value = "min-max"
    assert list(explorer.chart.data[0].y) == [1.0, 0.5, 0.0]
    explorer.view.value = "softmax"
    np.testing.assert_allclose(explorer.chart.data[0].y, weights[1], rtol=1e-12)


def test_bags_are_listed_with_entropy_and_margin_and_sort_by_either():
    uniform = dict(bag("u", "Rock", "Rock", 4), attention=np.full((3, 4), 0.25).tolist())
    data = {"classes": CLASSES, "bags": [uniform, *DATA["bags"]]}
    explorer = widgets.AttentionExplorer(data)
    labels = [label for label, _ in explorer.bag.options]
    assert labels[0] == "u · 4 tracks · Rock → Rock · entropy 1.00 · margin +0.70"
    assert labels[2] == "b · 2 tracks · Pop → Jazz · entropy 0.00 · margin -0.70"
    explorer.order.value = "entropy"  # one-hot attention (entropy 0) before uniform (1)
    assert [b["bag_id"] for b in explorer.visible_bags] == ["a", "b", "c", "u"]
    explorer.order.value = "margin"  # the wrong bag first
    assert [b["bag_id"] for b in explorer.visible_bags][0] == "b"
    assert explorer.figure.layout.title.text.startswith("bag b")
    with pytest.raises(ValueError, match="unknown order 'size'; valid: as saved, entropy, margin"):
        widgets.sort_bags(data["bags"], CLASSES, order="size")


def test_top_tags_show_beside_the_log_mel_and_the_note_above_it():
    tags = {300: [("rock", 0.6), ("guitar", 0.3)]}
    explorer = widgets.AttentionExplorer(
        DATA, mel_lookup=lambda t: np.zeros((4, 5)), tags_lookup=lambda t: tags.get(t, [("pop", 0.9)]), note="nearest"
    )
    fig = explorer.mel_figure
    assert fig.layout.title.text == "log-mel of track 300 · its top musicnn tags"
    assert [t.type for t in fig.data] == ["heatmap", "bar"] and list(fig.data[1].y) == ["guitar", "rock"]
    assert "nearest" in explorer.note.value
