"""Per-bag attention explorer (ipywidgets + plotly) and its static figures.

The data is the ``attention.json`` a bag-model notebook writes (see
:meth:`mattlib.study.experiment.ExperimentResult.attention_records`)::

    {"classes": [genre, ...], "model": "MLP+MATT",
     "bags": [{"bag_id": str, "split": "test", "true_genre": str, "pred_genre": str,
               "scores": [C floats], "tracks": [track ids], "track_genres": [str],
               "queries": [genre, ...],            # rows of "attention" and "raw"
               "attention": [[w, ...], ...],       # (len(queries), n_tracks), rows sum to 1
               "raw": [[e, ...], ...]}]}           # the scores e_k behind the softmax

For MATT, ``queries`` holds every genre (one distribution per genre query); for a pooling with
a single distribution (mean, max, gated) it holds ``["bag"]``.

:class:`AttentionExplorer` filters bags by split, true genre, predicted genre and
correct / wrong, lists them with their size, genres, attention entropy and margin (sortable by
either), and shows for the chosen bag the attention of each track under the true and the
predicted genre's query (as softmax weights, raw scores or min–max-scaled raw scores; see
:mod:`mattlib.views.attention`), the genre scores, the log-mel of a track (with its top musicnn
tags when the instances are musicnn embeddings) and an audio player. Clicking a track's attention
bar selects that track (as the track dropdown does).  Plotly's toolbar exports the current view as
PNG (its icons ship with plotly.js, so it works offline).
:func:`static_attention_figures` gives the same bars as plain figures, so executed notebooks and
the HTML report show attention without a kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mattlib.views import attention

__all__ = [
    "ORDERS",
    "bag_attention_figure",
    "bag_margin",
    "static_attention_figures",
    "filter_bags",
    "sort_bags",
    "AttentionExplorer",
]

_ALL = "(all)"
#: How the bag selector can order the bags.
ORDERS = ("as saved", "entropy", "margin")
_VIEW_TITLES = {"softmax": "", "raw": " · raw scores e_k (centred)", "min-max": " · min–max of raw scores"}


def bag_margin(bag: dict, classes: list[str]) -> float:
    """The true genre's score minus the best other genre's: > 0 when the bag is right, by that much."""
    scores = np.asarray(bag["scores"], dtype=float)
    true = classes.index(bag["true_genre"])
    return float(scores[true] - np.delete(scores, true).max())


def sort_bags(bags: list[dict], classes: list[str], *, order: str = "as saved") -> list[dict]:
    """``bags`` in an order of :data:`ORDERS`: lowest entropy first (the most selective attention;
    bags of one track last), or lowest margin first (the most wrong)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
    if order == "entropy":
        return sorted(bags, key=lambda b: np.nan_to_num(attention.entropy(attention.bag_weights(b)), nan=2.0))
    if order == "margin":
        return sorted(bags, key=lambda b: bag_margin(b, classes))
    return list(bags)


def bag_attention_figure(bag: dict, classes: list[str], *, view: str = "softmax") -> go.Figure:
    """Attention of each track of ``bag`` under the true and predicted genre queries (bars, in a
    view of :data:`mattlib.views.attention.VIEWS`), and the bag's genre scores."""
    fig = make_subplots(
        rows=1, cols=2, column_widths=[0.58, 0.42], subplot_titles=("attention per track", "genre scores")
    )
    labels = [f"{t} ({g})" for t, g in zip(bag["tracks"], bag["track_genres"])]
    shown = [bag["true_genre"]]
    if bag["pred_genre"] != bag["true_genre"]:
        shown.append(bag["pred_genre"])
    single = bag["queries"] == ["bag"]
    for genre, colour in zip(shown, ("#4C72B0", "#C44E52")):
        name = (
            "attention" if single else f"query: {genre}" + (" (true)" if genre == bag["true_genre"] else " (predicted)")
        )
        weights = attention.bag_weights(bag, genre, view=view)
        fig.add_trace(go.Bar(x=labels, y=weights, name=name, marker_color=colour), 1, 1)
        if single:
            break
    scores = np.asarray(bag["scores"], dtype=float)
    colours = [
        "#55A868" if c == bag["true_genre"] else ("#C44E52" if c == bag["pred_genre"] else "#bbbbbb") for c in classes
    ]
    fig.add_trace(go.Bar(x=classes, y=scores, marker_color=colours, name="score", showlegend=False), 1, 2)
    verdict = "correct" if bag["pred_genre"] == bag["true_genre"] else "wrong"
    fig.update_layout(
        title=f"bag {bag['bag_id']}: true {bag['true_genre']}, predicted {bag['pred_genre']} ({verdict})"
        + _VIEW_TITLES[view],
        barmode="group",
        height=360,
        margin=dict(t=60, b=90, l=40, r=10),
        legend=dict(orientation="h", y=-0.35),
    )
    if view != "raw":
        fig.update_yaxes(range=[0, 1], row=1, col=1)
    return fig


def static_attention_figures(data: dict, *, max_bags: int = 3) -> list[go.Figure]:
    """Figures of a few informative test bags: the largest correct and wrong ones."""
    bags = [b for b in data["bags"] if len(b["tracks"]) > 1] or list(data["bags"])
    bags.sort(key=lambda b: -len(b["tracks"]))
    correct = [b for b in bags if b["pred_genre"] == b["true_genre"]]
    wrong = [b for b in bags if b["pred_genre"] != b["true_genre"]]
    chosen = (correct[: (max_bags + 1) // 2] + wrong[: max_bags // 2])[:max_bags]
    return [bag_attention_figure(b, data["classes"]) for b in chosen]


def filter_bags(
    bags: list[dict], *, split: str = _ALL, true_genre: str = _ALL, pred_genre: str = _ALL, outcome: str = _ALL
) -> list[dict]:
    """Bags matching every filter (``"(all)"`` matches anything; outcome: correct / wrong)."""
    keep = []
    for bag in bags:
        if split != _ALL and bag.get("split") != split:
            continue
        if true_genre != _ALL and bag["true_genre"] != true_genre:
            continue
        if pred_genre != _ALL and bag["pred_genre"] != pred_genre:
            continue
        correct = bag["pred_genre"] == bag["true_genre"]
        if outcome == "correct" and not correct or outcome == "wrong" and correct:
            continue
        keep.append(bag)
    return keep


def _set_output(out, fig: go.Figure | None) -> None:
    """Show ``fig`` in an ``ipywidgets.Output`` by setting its outputs directly.

    Capturing with ``with out: display(fig)`` routes messages through the kernel's output hooks,
    which papermill / nbclient occasionally never finish (the notebook then hangs); setting the
    widget's ``outputs`` trait is a plain state update, saved with the widget state.
    """
    import plotly.io as pio

    if fig is None:
        out.outputs = ()
        return
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)


class AttentionExplorer:
    """Interactive per-bag attention view.

    Parameters
    ----------
    data : dict
        An ``attention.json`` record (module docstring).
    mel_lookup : callable, optional
        ``track_id -> ndarray (n_mels, frames)`` in dB, for the log-mel panel.
    audio_lookup : callable, optional
        ``track_id -> Path`` of the mp3, for the audio player.
    tags_lookup : callable, optional
        ``track_id -> [(tag, probability), ...]``, shown beside the log-mel (musicnn instances:
        :func:`mattlib.features.musicnn.tag_lookup`).
    note : str
        A line shown above the log-mel panel (which cached log-mel it reads, or why none).

    Attributes
    ----------
    figure : plotly.graph_objects.Figure
        The figure for the current bag (updated by every callback).
    """

    def __init__(
        self,
        data: dict,
        *,
        mel_lookup: Callable[[int], np.ndarray] | None = None,
        audio_lookup: Callable[[int], Path] | None = None,
        tags_lookup: Callable[[int], list[tuple[str, float]]] | None = None,
        note: str = "",
    ) -> None:
        import ipywidgets as w

        if not data.get("bags"):
            raise ValueError("attention data holds no bags")
        self.data = data
        self.classes = list(data["classes"])
        self.mel_lookup = mel_lookup or None
        self.audio_lookup = audio_lookup
        self.tags_lookup = tags_lookup
        bags = data["bags"]
        splits = sorted({b.get("split", "test") for b in bags})
        self.split = w.Dropdown(options=[_ALL, *splits], value=_ALL, description="split")
        self.true_genre = w.Dropdown(options=[_ALL, *self.classes], value=_ALL, description="true")
        self.pred_genre = w.Dropdown(options=[_ALL, *self.classes], value=_ALL, description="predicted")
        self.outcome = w.ToggleButtons(options=[_ALL, "correct", "wrong"], value=_ALL, description="outcome")
        self.order = w.Dropdown(options=list(ORDERS), value=ORDERS[0], description="order")
        self.view = w.ToggleButtons(options=list(attention.VIEWS), value="softmax", description="weights")
        self.bag = w.Dropdown(description="bag", layout=w.Layout(width="560px"))
        self.track = w.Dropdown(description="track")
        self.status = w.HTML()
        # a FigureWidget, so a click on a bar reaches Python (see _on_bar_click)
        self.chart = go.FigureWidget()
        self.note = w.HTML(f"<i>{note}</i>" if note else "")
        self.mel_out = w.Output()
        self.audio_box = w.Box()
        # audio is loaded on demand: a clip per bag change would bloat saved widget state, and an
        # Audio widget created while papermill executes the notebook stalls nbclient
        self.play = w.Button(description="load audio", icon="play", disabled=audio_lookup is None)
        self.play.on_click(self._on_play)
        self.figure: go.Figure | None = None
        self.mel_figure: go.Figure | None = None
        for control in (self.split, self.true_genre, self.pred_genre, self.outcome, self.order):
            control.observe(self._on_filter, names="value")
        self.bag.observe(self._on_bag, names="value")
        self.view.observe(self._on_bag, names="value")
        self.track.observe(self._on_track, names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.split, self.true_genre, self.pred_genre]),
                self.outcome,
                w.HBox([self.order, self.bag, self.status]),
                self.view,
                self.chart,
                w.HBox([self.track, self.play, self.audio_box]),
                self.note,
                self.mel_out,
            ]
        )
        self._on_filter()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        # where the widget is not drawn (an untrusted notebook, a plain-text viewer), one line
        # instead of the VBox's repr; executed notebooks carry its last view below (views.last_view)
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = "Attention explorer (interactive widget)"
        return bundle

    @property
    def visible_bags(self) -> list[dict]:
        """The bags the filters let through, in the chosen order."""
        kept = filter_bags(
            self.data["bags"],
            split=self.split.value,
            true_genre=self.true_genre.value,
            pred_genre=self.pred_genre.value,
            outcome=self.outcome.value,
        )
        return sort_bags(kept, self.classes, order=self.order.value)

    def _label(self, bag: dict) -> str:
        h = attention.entropy(attention.bag_weights(bag))
        return (
            f"{bag['bag_id']} · {len(bag['tracks'])} tracks · {bag['true_genre']} → {bag['pred_genre']}"
            f" · entropy {'–' if np.isnan(h) else f'{h:.2f}'} · margin {bag_margin(bag, self.classes):+.2f}"
        )

    def _on_filter(self, _change: Any = None) -> None:
        bags = self.visible_bags
        self.status.value = f"&nbsp;{len(bags)} bag(s) match"
        position = {id(b): i for i, b in enumerate(self.data["bags"])}
        options = [(self._label(b), position[id(b)]) for b in bags]
        self.bag.options = options
        self.bag.value = options[0][1] if options else None
        if not options:
            self._show(None)

    def _on_bag(self, change: Any = None) -> None:
        index = self.bag.value
        self._show(None if index is None else self.data["bags"][index])

    def _show(self, bag: dict | None) -> None:
        self.figure = None if bag is None else bag_attention_figure(bag, self.classes, view=self.view.value)
        self.chart.data = ()
        with self.chart.batch_update():
            self.chart.layout = {} if self.figure is None else self.figure.layout
            self.chart.add_traces([] if self.figure is None else list(self.figure.data))
        # plotly refreshes the state a view is built from only when the FigureWidget itself is
        # displayed (inside the VBox it never is): without this, saved widget state holds an empty chart
        shown = self.chart.to_dict()
        self.chart._widget_layout, self.chart._widget_data = shown["layout"], shown["data"]
        if bag is None:
            self.track.options = []
            return
        for trace in self.chart.data[:-1]:  # the attention bars (the last trace: genre scores)
            trace.on_click(self._on_bar_click)
        tracks = [int(t) for t in bag["tracks"]]
        if list(self.track.options) != tracks:
            self.track.options = tracks
            self.track.value = tracks[0]
            self._on_track()

    def _on_bar_click(self, _trace: Any, points: Any, _state: Any) -> None:
        if points.point_inds:
            self.track.value = self.track.options[points.point_inds[0]]

    def _on_track(self, _change: Any = None) -> None:
        track_id = self.track.value
        self.mel_figure = None
        if track_id is None:
            _set_output(self.mel_out, None)
            return
        tags = self.tags_lookup(track_id) if self.tags_lookup is not None else None
        if self.mel_lookup is not None:
            mel = np.round(np.asarray(self.mel_lookup(track_id), dtype=float), 1)  # dB; keeps state small
            self.mel_figure = _mel_figure(mel, track_id, tags)
        _set_output(self.mel_out, self.mel_figure)
        self.audio_box.children = []

    def _on_play(self, _button: Any = None) -> None:
        import ipywidgets as w

        track_id = self.track.value
        if track_id is None or self.audio_lookup is None:
            return
        path = Path(self.audio_lookup(track_id))
        if path.exists() and path.stat().st_size > 0:
            self.audio_box.children = [w.Audio.from_file(str(path), autoplay=False, loop=False)]
        else:
            self.audio_box.children = [w.HTML(f"no audio at {path}")]


def _mel_figure(mel: np.ndarray, track_id: int, tags: list[tuple[str, float]] | None) -> go.Figure:
    """A track's log-mel (heatmap), with its top tags beside it when given."""
    fig = make_subplots(rows=1, cols=2 if tags else 1, column_widths=[0.72, 0.28] if tags else None)
    fig.add_trace(go.Heatmap(z=mel, colorscale="Magma", colorbar=dict(title="dB", x=0.7 if tags else 1.02)), 1, 1)
    fig.update_xaxes(title_text="frame", row=1, col=1)
    fig.update_yaxes(title_text="mel band", row=1, col=1)
    title = f"log-mel of track {track_id}"
    if tags:
        names, probs = zip(*tags)
        fig.add_trace(go.Bar(x=probs[::-1], y=names[::-1], orientation="h", showlegend=False), 1, 2)
        fig.update_xaxes(title_text="tag probability", range=[0, 1], row=1, col=2)
        title += " · its top musicnn tags"
    fig.update_layout(title=title, height=260, margin=dict(t=40, b=30, l=40, r=10))
    return fig
