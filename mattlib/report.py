"""Gather a run's ``metrics.json`` files into the study's tables, figures and an HTML report.

``matt report outputs/<run>`` writes ``outputs/<run>/report/``:

- ``table1.csv`` — test accuracy (%) per feature set × model (mean, sd over seeds), track-level and
  bag-level, beside the paper's Table I;
- ``table2.csv`` — Top@K (K = 2, 3, 5) on the tail genres, with the tail sets computed from the
  training counts and the paper's own sets, beside the paper's Table II;
- ``pr_curves.png`` — micro-averaged precision–recall curves of every model;
- ``notebooks/*.html`` — every executed notebook rendered to HTML (plotly figures included);
- ``index.html`` — all of the above on one page, with static attention plots.

Each model notebook writes a ``metrics.json`` with a ``summary`` block (see
:func:`mattlib.experiment.ExperimentResult.metrics`); other notebooks' files are listed only.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mattlib.results import METRICS_FILE  # noqa: E402

__all__ = ["collect", "table1", "table2", "paper_table1", "paper_table2", "plot_pr_curves", "build_report"]

_TAIL_KEYS = ("<100", "<200")
_KS = (2, 3, 5)


def paper_table1() -> pd.DataFrame:
    """The paper's Table I (test accuracy %, FMA medium): index feature set, columns models."""
    path = resources.files("mattlib") / "data" / "paper" / "table1_accuracy.csv"
    table = pd.read_csv(path, index_col=0)
    return table.rename(index={"all (1-9)": "all"})


def paper_table2() -> pd.DataFrame:
    """The paper's Table II (Top@K %, tail genres); ``<5.0`` kept as printed."""
    path = resources.files("mattlib") / "data" / "paper" / "table2_topk_tail.csv"
    return pd.read_csv(path, index_col=0, dtype=str)


def _entries(run_dir: str | Path):
    """(metrics.json path, entry, training counts) for every reported model of a run."""
    for path in sorted(Path(run_dir).glob(f"*/*/{METRICS_FILE}")):
        data = json.loads(path.read_text())
        for entry in data.get("results") or []:
            yield path, entry, data.get("train_counts") or {}


def collect(run_dir: str | Path) -> pd.DataFrame:
    """One row per reported model of a run: identity, headline metrics, Top@K, source path.

    Columns ``top_k|<tail set>|<K>`` hold Top@K for the tail sets ``<100``, ``<200`` (from the
    training counts) and ``paper<100``, ``paper<200`` (the paper's sets).
    """
    rows = []
    for path, entry, counts in _entries(run_dir):
        summary = entry.get("summary") or {}
        row = {
            "notebook": path.parent.parent.name,
            "cell": path.parent.name,
            **{k: entry.get(k) for k in ("label", "feature_set", "model", "pooling", "seed", "evaluation")},
            "path": str(path),
        }
        for key in ("accuracy", "track_accuracy", "bag_accuracy", "macro_f1", "balanced_accuracy",
                    "average_precision", "n_tracks", "n_bags"):
            row[key] = summary.get(key)
        for tail, by_k in (summary.get("top_k") or {}).items():
            for k, value in by_k.items():
                row[f"top_k|{tail}|{k}"] = value
        for genre, value in (summary.get("per_genre_recall") or {}).items():
            row[f"recall|{genre}"] = value
            row[f"count|{genre}"] = counts.get(genre)
        for group, value in (summary.get("group_recall") or {}).items():
            row[f"group|{group}"] = value
        rows.append(row)
    base = ["notebook", "cell", "label", "feature_set", "model", "pooling", "seed", "evaluation", "path",
            "accuracy", "track_accuracy", "bag_accuracy", "macro_f1", "balanced_accuracy", "average_precision"]
    return pd.DataFrame(rows, columns=None if rows else base)


def _mean_sd(group: pd.Series) -> tuple[float, float]:
    values = pd.to_numeric(group, errors="coerce").dropna() * 100
    if values.empty:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def table1(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy (%) per feature set and model, mean and sd over seeds, beside the paper.

    ``accuracy`` is the model's own prediction per test track (a bag model's bag prediction is
    given to each of its tracks); ``per_bag_accuracy`` counts test bags against their majority
    genre (for track-level models, each track is a bag).
    """
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    paper = paper_table1()
    rows = []
    for (feature_set, label), group in frame.groupby(["feature_set", "label"], sort=False):
        acc, sd = _mean_sd(group["accuracy"])
        bag_acc, bag_sd = _mean_sd(group["bag_accuracy"])
        paper_value = np.nan
        if feature_set in paper.index and label in paper.columns:
            paper_value = float(paper.loc[feature_set, label])
        rows.append({
            "feature_set": feature_set, "model": label, "accuracy": acc, "accuracy_sd": sd,
            "per_bag_accuracy": bag_acc, "per_bag_accuracy_sd": bag_sd, "n_seeds": len(group),
            "paper_accuracy": paper_value,
        })
    return pd.DataFrame(rows)


def table2(frame: pd.DataFrame) -> pd.DataFrame:
    """Top@K (%) on the tail genres per model: ours (tail sets from training counts), the same
    models on the paper's tail sets, and the paper's published Table II row."""
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    paper = paper_table2()
    rows = []
    for (feature_set, label), group in frame.groupby(["feature_set", "label"], sort=False):
        row = {"feature_set": feature_set, "model": label, "n_seeds": len(group)}
        for family, prefix in (("", "ours"), ("paper", "paper_sets")):
            for tail in _TAIL_KEYS:
                for k in _KS:
                    column = f"top_k|{family}{tail}|{k}"
                    value = _mean_sd(group[column])[0] if column in group else np.nan
                    row[f"{prefix} {tail} top{k}"] = value
        paper_label = label if label in paper.index else None
        for tail, tag in (("<100", "lt100"), ("<200", "lt200")):
            for k in _KS:
                row[f"published {tail} top{k}"] = paper.loc[paper_label, f"{tag}_top{k}"] if paper_label else ""
        rows.append(row)
    base = ["notebook", "cell", "label", "feature_set", "model", "pooling", "seed", "evaluation", "path",
            "accuracy", "track_accuracy", "bag_accuracy", "macro_f1", "balanced_accuracy", "average_precision"]
    return pd.DataFrame(rows, columns=None if rows else base)


def plot_pr_curves(run_dir: str | Path, *, ax=None) -> plt.Figure:
    """Micro-averaged precision–recall curves (tracks × genres) of every model in a run, with
    average precision in the legend (first seed of each feature set × model)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, 6))
    else:
        fig = ax.figure
    seen = set()
    for _, entry, _ in _entries(run_dir):
        curve = entry.get("pr_curve")
        key = (entry.get("feature_set"), entry.get("label"))
        if not curve or entry.get("evaluation", "bags") != "bags" or key in seen:
            continue
        seen.add(key)
        ap = (entry.get("summary") or {}).get("average_precision")
        name = f"{key[1]} [{key[0]}]" + (f" AP={ap:.3f}" if ap is not None else "")
        ax.plot(curve["recall"], curve["precision"], lw=1.3, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Micro-averaged precision–recall (test tracks × genres)")
    if seen:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1 if len(seen) <= 24 else 2)
    fig.tight_layout()
    return fig


def _attention_figures(run_dir: Path, *, max_bags: int = 3) -> list[str]:
    """Static plotly figures (HTML divs) of a few bags' attention, from attention.json files."""
    from mattlib import widgets

    divs = []
    # MATT / gated attention first (mean pooling's weights are uniform by construction)
    paths = sorted(run_dir.glob("05_matt/*/attention.json"),
                   key=lambda p: ("matt" not in p.parent.name, "mel" in p.parent.name, p.parent.name))
    paths = paths or sorted(run_dir.glob("*/*/attention.json"))
    for path in paths[:3]:
        data = json.loads(path.read_text())
        for fig in widgets.static_attention_figures(data, max_bags=max_bags):
            fig.update_layout(title=f"{path.parent.parent.name}/{path.parent.name}: {fig.layout.title.text}")
            divs.append(fig.to_html(full_html=False, include_plotlyjs=False))
    return divs


def table1_wide(t1: pd.DataFrame) -> pd.DataFrame:
    """Table I as the paper prints it: feature sets × models, cells "ours ± sd (paper)"."""
    if t1.empty:
        return t1

    def cell(row) -> str:
        text = f"{row['accuracy']:.1f}"
        if row["n_seeds"] > 1:
            text += f" ± {row['accuracy_sd']:.1f}"
        if not pd.isna(row["paper_accuracy"]):
            text += f" ({row['paper_accuracy']:g})"
        return text

    wide = t1.assign(cell=t1.apply(cell, axis=1)).pivot(index="feature_set", columns="model", values="cell")
    order = [m for m in ("LR", "KNN", "SVM", "MLP", "MLP+MIL", "MLP+MATT") if m in wide.columns]
    wide = wide[order + sorted(c for c in wide.columns if c not in order)]
    wide.columns.name = None
    return wide.fillna("–").reset_index()


def _format(table: pd.DataFrame) -> str:
    return table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.2f}", border=0,
                         classes="table")


def build_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report/`` (tables, PR figure, rendered notebooks, ``index.html``)."""
    from mattlib import report_html

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    out = run_dir / "report"
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    frame = collect(run_dir)
    t1 = table1(frame) if not frame.empty else pd.DataFrame()
    t2 = table2(frame) if not frame.empty else pd.DataFrame()
    t1.to_csv(out / "table1.csv", index=False)
    t2.to_csv(out / "table2.csv", index=False)
    frame.to_csv(out / "all_metrics.csv", index=False)
    fig = plot_pr_curves(run_dir)
    fig.savefig(out / "pr_curves.png", dpi=120)
    plt.close(fig)
    report_html.write_assets(out)
    links = report_html.render_notebooks(run_dir, out / "notebooks")
    attention = _attention_figures(run_dir)

    case = [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"07_case_study/*/{METRICS_FILE}"))]
    case_rows = [c["case_study"] for c in case if "case_study" in c]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>MATT study — {html.escape(run_dir.name)}</title>",
        "<script src='plotly.min.js'></script>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:12px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;"
        "text-align:right}th{background:#f3f3f3}h2{margin-top:1.6em}.note{color:#555;font-size:13px}</style>",
        "</head><body>",
        f"<h1>MATT study — run <code>{html.escape(run_dir.name)}</code></h1>",
        "<p class='note'>Models are selected on the validation split; the paper's authors selected on "
        "the test split, so its published numbers are optimistic. On the demo dataset the numbers "
        "describe synthetic music and say nothing about real music.</p>",
        "<h2>Table I — test accuracy (%) per feature set and model</h2>",
        "<p class='note'>Each cell: this study's test accuracy (± sd over seeds), the paper's Table I "
        "in brackets. Each test track is scored with its model's prediction (a bag model's bag "
        "prediction goes to every track of the bag); <i>+late</i>: the track-level model's "
        "probabilities averaged over each test bag (no bag training).</p>",
        _format(table1_wide(t1)) if not t1.empty else "<p>no model results yet</p>",
        "<details><summary>Table I in full (track- and bag-level accuracy, sd, seeds)</summary>",
        "<p class='note'><b>per_bag_accuracy</b>: test bags against their majority genre.</p>",
        _format(t1) if not t1.empty else "", "</details>",
        "<h2>Table II — Top@K (%) on the tail genres</h2>",
        "<p class='note'><b>ours</b>: tail sets from the training counts (&lt;100, &lt;200 training tracks, "
        "placed between the same rarest genres on small data); <b>paper_sets</b>: the paper's own sets (its "
        "&lt;100 also held International); <b>published</b>: the paper's Table II.</p>",
        _format(t2[[c for c in t2.columns if not c.startswith("paper_sets")]]) if not t2.empty
        else "<p>no model results yet</p>",
        "<details><summary>Table II on the paper's own tail sets</summary>",
        _format(t2[[c for c in t2.columns if not c.startswith(("ours", "published"))]]) if not t2.empty else "",
        "</details>",
        "<h2>Precision–recall</h2><img src='pr_curves.png' style='max-width:1100px'>",
    ]
    if case_rows:
        parts += ["<h2>Case study — trained on bags, tested on single tracks</h2>",
                  _format(pd.DataFrame(case_rows))]
    if attention:
        parts += ["<h2>Attention over a few bags</h2>", *attention]
    parts.append("<h2>Executed notebooks</h2><ul>")
    for notebook, cell, href in links:
        parts.append(f"<li><a href='{html.escape(href)}'>{html.escape(notebook)} / {html.escape(cell)}</a></li>")
    parts.append("</ul></body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index

