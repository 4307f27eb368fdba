"""Figures the model notebooks show (plotly, so genre names appear on hover)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "training_curve",
    "recall_vs_count",
    "recall_vs_count_models",
    "recall_by_genre_lines",
    "group_recall_table",
    "case_study_bars",
]


def training_curve(history: list[dict]) -> go.Figure:
    """Training loss and validation accuracy per epoch; the selected (best-validation) epoch marked."""
    frame = pd.DataFrame(history)
    if frame.empty:
        raise ValueError("empty training history")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=frame["epoch"], y=frame["train_loss"], name="training loss"), secondary_y=False)
    fig.add_trace(
        go.Scatter(x=frame["epoch"], y=100 * frame["val_accuracy"], name="validation accuracy (%)"), secondary_y=True
    )
    best = frame.loc[frame["val_accuracy"].idxmax(), "epoch"]
    fig.add_vline(x=best, line_dash="dot", annotation_text=f"selected epoch {best}")
    fig.update_layout(
        height=320,
        title="Training (model selected on the validation split)",
        xaxis_title="epoch",
        margin=dict(t=50, b=40),
    )
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="accuracy (%)", secondary_y=True)
    return fig


def recall_vs_count(per_genre_recall: Mapping[str, float | None], train_counts: pd.Series) -> go.Figure:
    """Test recall of each genre against its number of training tracks (log x)."""
    frame = pd.DataFrame({"genre": list(per_genre_recall), "recall": list(per_genre_recall.values())})
    frame["training tracks"] = frame["genre"].map(train_counts).astype(float)
    fig = px.scatter(
        frame,
        x="training tracks",
        y="recall",
        text="genre",
        log_x=True,
        title="Per-genre test recall against training tracks",
    )
    fig.update_traces(textposition="top center")
    fig.update_layout(height=380, yaxis_range=[-0.05, 1.08])
    return fig


def _recall_long(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in frame.iterrows():
        for column in row.index:
            if column.startswith("recall|") and row[column] is not None and not pd.isna(row[column]):
                genre = column.split("|", 1)[1]
                rows.append(
                    {
                        "model": f"{row['label']} [{row['feature_set']}]",
                        "genre": genre,
                        "recall": float(row[column]),
                        "training tracks": float(row.get(f"count|{genre}", np.nan)),
                    }
                )
    return pd.DataFrame(rows)


def recall_vs_count_models(frame: pd.DataFrame) -> go.Figure:
    """Per-genre recall against training tracks for every model of a run (from
    :func:`mattlib.views.report.collect`), averaged over seeds."""
    long = _recall_long(frame)
    if long.empty:
        raise ValueError("no per-genre recall in these results")
    long = long.groupby(["model", "genre"], as_index=False).mean()
    fig = px.scatter(
        long,
        x="training tracks",
        y="recall",
        color="model",
        hover_name="genre",
        log_x=True,
        title="Per-genre test recall against training tracks, all models",
    )
    fig.update_layout(height=430, yaxis_range=[-0.05, 1.05])
    return fig


#: The models per-genre recall is drawn for: the question's controls and bag models.
_KEY_MODELS = ("MLP (torch)", "MLP (torch)+late", "MLP+MIL", "MLP+MATT", "MLP+MATT (bilinear)")


def recall_by_genre_lines(frame: pd.DataFrame, *, feature_set: str | None = None, models=_KEY_MODELS) -> go.Figure:
    """Per-genre test recall (mean over seeds) of a few models as lines over the genres sorted by
    training count (rarest first), from :func:`mattlib.views.report.collect`'s table.

    ``feature_set`` defaults to "all" when the run has it, else its most frequent one; ``models``
    (the question's controls and bag models) fall back to every model of that feature set when
    none of them ran.
    """
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    if feature_set is None and not frame.empty:
        present = frame["feature_set"].value_counts()
        feature_set = "all" if "all" in present.index else str(present.index[0])
    long = _recall_long(frame[frame["feature_set"] == feature_set])
    if long.empty:
        return go.Figure().update_layout(title="No per-genre recall in this run", height=200)
    long["label"] = long["model"].str.replace(f" [{feature_set}]", "", regex=False)
    shown = [m for m in models if m in set(long["label"])] or sorted(set(long["label"]))
    long = long[long["label"].isin(shown)].groupby(["label", "genre"], as_index=False).mean(numeric_only=True)
    order = long.groupby("genre")["training tracks"].first().sort_values().index.tolist()
    fig = go.Figure()
    for label in shown:
        rows = long[long["label"] == label].set_index("genre").reindex(order)
        fig.add_trace(
            go.Scatter(
                x=[f"{g} ({int(c)})" for g, c in zip(order, rows["training tracks"].fillna(0))],
                y=rows["recall"],
                mode="lines+markers",
                name=label,
            )
        )
    fig.update_layout(
        height=420,
        title=f"Per-genre test recall, genres by training tracks (rarest left) [{feature_set}]",
        yaxis=dict(title="recall (mean over seeds)", range=[-0.05, 1.05]),
        xaxis=dict(title="genre (training tracks)", tickangle=-40),
    )
    return fig


def group_recall_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean per-genre recall in the head / medium / tail groups, per model (mean over seeds)."""
    columns = [c for c in frame.columns if c.startswith("group|")]
    table = frame.groupby(["label", "feature_set"])[columns].mean()
    table.columns = [c.split("|", 1)[1] for c in columns]
    return table.sort_values(table.columns[-1] if len(table.columns) else "label", ascending=False)


def case_study_bars(summary: Mapping[str, object]) -> go.Figure:
    """The case study's three accuracies (ours) beside the paper's."""
    ours = {
        "trained on bags,<br>tested on bags": summary["trained on bags, tested on bags (%)"],
        "trained on bags,<br>tested on single tracks": summary["trained on bags, tested on single tracks (%)"],
        "trained on single tracks": summary["trained on single tracks (%)"],
    }
    paper = [68.83, 63.69, 58.0]
    fig = go.Figure(
        [
            go.Bar(name=f"this study ({summary['model']})", x=list(ours), y=list(ours.values())),
            go.Bar(name="paper (MLP+MATT, FMA medium)", x=list(ours), y=paper),
        ]
    )
    fig.update_layout(
        barmode="group",
        height=360,
        yaxis_title="test accuracy (%)",
        title="Case study: bag training, single-track testing",
    )
    return fig
