"""Gather a run's ``metrics.json`` and ``test_scores.csv`` files into the study's report.

``matt report outputs/<run>`` writes ``outputs/<run>/report/``:

- ``index.html`` — opens with the answer: a forest plot of the paired differences and a
  paragraph written from them (:mod:`mattlib.views.verdict`), then every table below, the
  precision–recall small multiples, attention plots and every executed notebook;
- ``paired.csv`` — paired differences on the same test albums (bag model − its track model,
  MIL − late fusion, MATT − MIL, MATT − late fusion, MATT (bilinear) − MIL, the case study) of
  accuracy, Top@K on the tail sets (track and bag level) and tail / head / medium recall, with
  intervals over seeds and albums and Holm-adjusted p-values;
- ``table1.csv`` — test accuracy (%) per feature set × model (mean, sd over seeds, the CI of the
  seed mean, test tracks and albums), beside the paper's Table I;
- ``table2.csv`` — Top@K (K = 2, 3, 5) on the tail genres, per track and per bag, with CIs ("not
  estimable" on too few albums) and support, beside the paper's Table II;
- ``average_precision.csv`` — macro (with CI), per-genre and micro AP;
- ``all_metrics.csv`` — every reported model and seed;
- ``notebooks/*.html`` — every executed notebook rendered to HTML (plotly figures included).

Every interval is the hierarchical bootstrap of :mod:`mattlib.evaluation.uncertainty`.
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.executors import JOBS
from mattlib.locks import FolderLocked, folder_lock
from mattlib.views import report_attention, report_html, runs, verdict

__all__ = [
    "collect",
    "table1",
    "table2",
    "ap_table",
    "seed_album_intervals",
    "paper_table1",
    "paper_table2",
    "pr_figure",
    "build_report",
]

_TAIL_KEYS = ("<100", "<200")
_KS = (2, 3, 5)
#: FMA's baselines appear in the paper's tables under their bare names.
_PAPER_NAMES = {"MLP (sklearn)": "MLP"}


def paper_table1() -> pd.DataFrame:
    """The paper's Table I (test accuracy %, FMA medium): index feature set, columns models."""
    path = resources.files("mattlib") / "data" / "paper" / "table1_accuracy.csv"
    table = pd.read_csv(path, index_col=0)
    return table.rename(index={"all (1-9)": "all"})


def paper_table2() -> pd.DataFrame:
    """The paper's Table II (Top@K %, tail genres); ``<5.0`` kept as printed."""
    path = resources.files("mattlib") / "data" / "paper" / "table2_topk_tail.csv"
    return pd.read_csv(path, index_col=0, dtype=str)


#: Identity and headline columns of :func:`collect`'s table (the columns of an empty run).
_IDENTITY = ("label", "feature_set", "model", "pooling", "seed", "evaluation")
_HEADLINE = ("accuracy", "track_accuracy", "bag_accuracy", "macro_f1", "balanced_accuracy", "average_precision")
_COLLECT_COLUMNS = ["notebook", "cell", *_IDENTITY, "path", "source_label", "config", *_HEADLINE]


def _entries(run_dir: str | Path, cells: Iterable[str | Path] | None = None):
    """(metrics.json path, data, entry) for every reported model of a run (or of ``cells``)."""
    for path in runs.metrics_files(run_dir, cells):
        data = json.loads(path.read_text())
        for entry in data.get("results") or []:
            yield path, data, entry


def collect(run_dir: str | Path, *, cells: Iterable[str | Path] | None = None) -> pd.DataFrame:
    """One row per reported model and seed of a run: identity, headline metrics, Top@K, source path.

    ``cells`` (cell folders) restricts the table to those cells, e.g. the cells of the params file
    the run was made from; by default every cell folder of the run is read. ``label`` names one
    configuration: cells that differ in more than the seed get labels naming what differs
    (:func:`mattlib.views.runs.disambiguate`), and two cells of one configuration and seed are
    an error. Columns ``top_k|<tail set>|<K>`` hold Top@K for the tail sets ``<100``, ``<200``
    (from the training counts) and ``paper<100``, ``paper<200`` (the paper's sets).
    """
    rows = []
    for path, data, entry in _entries(run_dir, cells):
        counts = data.get("train_counts") or {}
        summary = entry.get("summary") or {}
        row = {
            "notebook": path.parent.parent.name,
            "cell": path.parent.name,
            **{k: entry.get(k) for k in _IDENTITY},
            "path": str(path),
            "source_label": entry.get("label"),
            "config": json.dumps(runs.configuration(data, entry), sort_keys=True, default=str),
        }
        for key in (*_HEADLINE, "n_tracks", "n_bags", "n_albums"):
            row[key] = summary.get(key)
        for name, (low, high) in (summary.get("ci") or {}).items():
            row[f"ci_low|{name}"], row[f"ci_high|{name}"] = low, high
        for tail, by_k in (summary.get("top_k") or {}).items():
            for k, value in by_k.items():
                row[f"top_k|{tail}|{k}"] = value
        for tail, by_k in (summary.get("bag_top_k") or {}).items():
            for k, value in by_k.items():
                row[f"bag_top_k|{tail}|{k}"] = value
        for tail, n in (summary.get("tail_support") or {}).items():
            row[f"support|{tail}"] = n
        for tail, n in (summary.get("tail_album_support") or {}).items():
            row[f"album_support|{tail}"] = n
        for genre, value in (summary.get("per_genre_recall") or {}).items():
            row[f"recall|{genre}"] = value
            row[f"count|{genre}"] = counts.get(genre)
        for genre, value in (summary.get("per_genre_ap") or {}).items():
            row[f"ap|{genre}"] = value
        for group, value in (summary.get("group_recall") or {}).items():
            row[f"group|{group}"] = value
        rows.append(row)
    runs.disambiguate(rows)
    return pd.DataFrame(rows, columns=None if rows else _COLLECT_COLUMNS)


def _mean_sd(group: pd.Series) -> tuple[float, float]:
    values = pd.to_numeric(group, errors="coerce").dropna() * 100
    if values.empty:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _first(group: pd.DataFrame, column: str):
    values = group[column].dropna() if column in group else pd.Series(dtype=float)
    return int(values.iloc[0]) if len(values) else np.nan


def _interval_text(stats: dict | None) -> str:
    """ "[low, high]" (%), or "not estimable (k albums)" when too few albums hold the metric."""
    if not stats:
        return ""
    if np.isnan(stats["ci_low"]):
        return f"not estimable ({stats['albums']} albums)"
    return f"[{stats['ci_low']:.1f}, {stats['ci_high']:.1f}]"


def seed_album_intervals(models: dict, context: dict, *, n_boot: int = 1000) -> dict[tuple[str, str], dict]:
    """Per (feature set, label) of the models evaluated on their own test predictions, the
    metrics of :func:`mattlib.views.verdict.model_intervals` (seed mean, sd, hierarchical CI)."""
    return {
        (key[0], key[1]): verdict.model_intervals(model, context, n_boot=n_boot)
        for key, model in models.items()
        if key[2] == "bags"
    }


def table1(frame: pd.DataFrame, intervals: dict | None = None) -> pd.DataFrame:
    """Test accuracy (%) per feature set and model: mean and sd over seeds, the 95 % CI of the
    seed mean from the hierarchical bootstrap over seeds and test albums (``intervals``, from
    :func:`intervals`; NaN without per-track scores), the test support, beside the paper.

    ``accuracy`` is the model's own prediction per test track (a bag model's bag prediction is
    given to each of its tracks); ``per_bag_accuracy`` counts test bags against their majority
    genre (for track-level models, each track is a bag).
    """
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    intervals = intervals or {}
    paper = paper_table1()
    rows = []
    for (feature_set, label), group in frame.groupby(["feature_set", "label"], sort=False):
        acc, sd = _mean_sd(group["accuracy"])
        bag_acc, bag_sd = _mean_sd(group["bag_accuracy"])
        stats = intervals.get((feature_set, label), {}).get("accuracy") or {}
        paper_label = _PAPER_NAMES.get(label, label)
        paper_value = np.nan
        if feature_set in paper.index and paper_label in paper.columns:
            paper_value = float(paper.loc[feature_set, paper_label])
        rows.append(
            {
                "feature_set": feature_set,
                "model": label,
                "accuracy": acc,
                "accuracy_sd": sd,
                "ci_low": stats.get("ci_low", np.nan),
                "ci_high": stats.get("ci_high", np.nan),
                "per_bag_accuracy": bag_acc,
                "per_bag_accuracy_sd": bag_sd,
                "n_seeds": len(group),
                "test_tracks": _first(group, "n_tracks"),
                "test_albums": _first(group, "n_albums"),
                "paper_accuracy": paper_value,
            }
        )
    return pd.DataFrame(rows)


def _paper_feature_set(label: str) -> str:
    """The features the paper's Table II used: the log-mel for the CRNNs, all 518 (1-9) else."""
    return "mel" if label.startswith("CRNN") else "all"


def table2(frame: pd.DataFrame, intervals: dict | None = None) -> pd.DataFrame:
    """Top@K (%) on the tail genres per model: ours (tail sets from training counts), at track
    level and at bag level (the paper's unit: one prediction per album–artist bag), with the 95 %
    CI of the seed mean over seeds and albums (``intervals``; "not estimable (k albums)" when the
    tail set's test tracks lie in fewer than :data:`mattlib.evaluation.uncertainty.MIN_ALBUMS`
    albums) and the support (test tracks / albums of the tail set); the same models on the paper's
    tail sets; and the paper's published Table II row -- only beside the feature set the paper
    used for it (all 518 features for LR ... MLP+MATT, the log-mel for the CRNNs)."""
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    intervals = intervals or {}
    paper = paper_table2()
    rows = []
    for (feature_set, label), group in frame.groupby(["feature_set", "label"], sort=False):
        stats = intervals.get((feature_set, label), {})
        row = {"feature_set": feature_set, "model": label, "n_seeds": len(group)}
        for family, prefix in (("", "ours"), ("paper", "paper_sets")):
            for tail in _TAIL_KEYS:
                row[f"{prefix} {tail} tracks"] = _first(group, f"support|{family}{tail}")
                row[f"{prefix} {tail} albums"] = _first(group, f"album_support|{family}{tail}")
                for k in _KS:
                    column = f"top_k|{family}{tail}|{k}"
                    row[f"{prefix} {tail} top{k}"] = _mean_sd(group[column])[0] if column in group else np.nan
                    if not family:
                        row[f"{prefix} {tail} top{k} CI"] = _interval_text(stats.get(f"top{k} {tail}"))
                        bag_column = f"bag_top_k|{tail}|{k}"
                        row[f"{prefix} {tail} bag top{k}"] = (
                            _mean_sd(group[bag_column])[0] if bag_column in group else np.nan
                        )
                        row[f"{prefix} {tail} bag top{k} CI"] = _interval_text(stats.get(f"bag top{k} {tail}"))
        paper_label = _PAPER_NAMES.get(label, label)
        if paper_label not in paper.index or feature_set != _paper_feature_set(label):
            paper_label = None
        for tail, tag in (("<100", "lt100"), ("<200", "lt200")):
            for k in _KS:
                row[f"published {tail} top{k}"] = paper.loc[paper_label, f"{tag}_top{k}"] if paper_label else ""
        rows.append(row)
    return pd.DataFrame(rows)


def ap_table(frame: pd.DataFrame, intervals: dict | None = None) -> pd.DataFrame:
    """Macro and per-genre one-vs-rest average precision (%) per model, with the macro AP's CI.

    One-vs-rest AP ranks the test tracks by one genre's score at a time, so it needs scores that
    are comparable across tracks only, not across genres: MATT's per-query scores (which need not
    sum to one) enter as they are. Micro AP (Table I's companion) pools every genre's scores and is
    dominated by the head genres; it is kept for comparison with the paper.
    """
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    intervals = intervals or {}
    rows = []
    for (feature_set, label), group in frame.groupby(["feature_set", "label"], sort=False):
        stats = intervals.get((feature_set, label), {}).get("macro AP")
        row = {
            "feature_set": feature_set,
            "model": label,
            "macro AP": stats["value"] if stats else np.nan,
            "macro AP CI": _interval_text(stats),
            "micro AP": _mean_sd(group["average_precision"])[0],
        }
        for column in (c for c in group.columns if c.startswith("ap|")):
            row[f"AP {column[3:]}"] = _mean_sd(group[column])[0]
        rows.append(row)
    return pd.DataFrame(rows)


#: Model families of the precision-recall small multiples, and the labels shown by default.
_PR_FAMILIES = (
    ("baselines (scikit-learn)", ("LR", "KNN", "SVM", "MLP (sklearn)")),
    ("MLP (torch) family", ("MLP (torch)", "MLP (torch)+late", "MLP+MIL", "MLP+MATT", "MLP+MATT (bilinear)")),
    ("CRNN family", ("CRNN", "CRNN+late", "CRNN+MIL", "CRNN+MATT")),
    ("CRNN-TF family", ("CRNN-TF", "CRNN-TF+late", "CRNN-TF+MIL", "CRNN-TF+MATT")),
)


def pr_figure(run_dir: str | Path, *, cells: Iterable[str | Path] | None = None, feature_set: str | None = None):
    """Micro-averaged precision–recall curves as small multiples, one panel per model family
    (scikit-learn baselines, the torch MLP, CRNN, CRNN-TF), first seed of each model, on
    ``feature_set`` (default "all" when the run has it, else its most frequent; the log-mel for
    the CRNNs); average precision in the legend (plotly)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if feature_set is None:
        sets = pd.Series(
            [e.get("feature_set") for _, _, e in _entries(run_dir, cells) if e.get("feature_set") != "mel"]
        )
        feature_set = "all" if (sets == "all").any() or sets.empty else str(sets.value_counts().index[0])

    curves: dict[str, tuple[list, list, float | None]] = {}
    for _, _, entry in _entries(run_dir, cells):
        curve = entry.get("pr_curve")
        label = entry.get("label")
        wanted = "mel" if str(label).startswith("CRNN") else feature_set
        if not curve or entry.get("evaluation", "bags") != "bags" or entry.get("feature_set") != wanted:
            continue
        curves.setdefault(label, (curve["recall"], curve["precision"], entry["summary"].get("average_precision")))
    families = [(name, [m for m in members if m in curves]) for name, members in _PR_FAMILIES]
    families = [(name, members) for name, members in families if members]
    fig = make_subplots(rows=1, cols=max(len(families), 1), subplot_titles=[f[0] for f in families] or ["no curves"])
    for col, (_, members) in enumerate(families, start=1):
        for label in members:
            recall, precision, ap = curves[label]
            name = label + (f" (AP {ap:.2f})" if ap is not None else "")
            fig.add_trace(go.Scatter(x=recall, y=precision, name=name, mode="lines"), row=1, col=col)
    fig.update_xaxes(title_text="recall", range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="precision", row=1, col=1)
    fig.update_layout(
        height=400,
        title=f"Micro-averaged precision–recall (test tracks × genres), per model family [{feature_set}; CRNNs: mel]",
        legend=dict(font=dict(size=10)),
    )
    return fig


def table1_wide(t1: pd.DataFrame) -> pd.DataFrame:
    """Table I as the paper prints it: feature sets × models, cells
    "ours ± sd [95 % CI] (paper)", and the test support (tracks / albums) per feature set."""
    if t1.empty:
        return t1

    def cell(row) -> str:
        text = f"{row['accuracy']:.1f}"
        if row["n_seeds"] > 1:
            text += f" ± {row['accuracy_sd']:.1f}"
        if not pd.isna(row.get("ci_low", np.nan)):
            text += f" [{row['ci_low']:.0f}, {row['ci_high']:.0f}]"
        if not pd.isna(row["paper_accuracy"]):
            text += f" ({row['paper_accuracy']:g})"
        return text

    wide = t1.assign(cell=t1.apply(cell, axis=1)).pivot(index="feature_set", columns="model", values="cell")
    order = [
        m
        for m in (
            "LR",
            "KNN",
            "SVM",
            "MLP (sklearn)",
            "MLP (torch)",
            "MLP (torch)+late",
            "MLP+MIL",
            "MLP+MATT",
            "MLP+MATT (bilinear)",
            "CRNN",
            "CRNN+late",
            "CRNN+MIL",
            "CRNN+MATT",
            "CRNN-TF",
            "CRNN-TF+late",
            "CRNN-TF+MIL",
            "CRNN-TF+MATT",
        )
        if m in wide.columns
    ]
    wide = wide[order + sorted(c for c in wide.columns if c not in order)]
    wide.columns.name = None
    if "test_tracks" in t1:
        support = t1.groupby("feature_set", sort=False).agg(
            test_tracks=("test_tracks", "first"), test_albums=("test_albums", "first")
        )
        wide = wide.join(support)
    return wide.fillna("–").reset_index()


def _known_answer(run_dir: Path, cells) -> tuple[str | None, dict | None]:
    """The planted effect's known answer (text, answers) when the run's data root is a demo."""
    from mattlib.data import planted

    root = _demo_root(run_dir, cells)
    if root is None:
        return None, None
    effect = json.loads((root / "demo_complete.json").read_text()).get("effect")
    known = planted.EFFECTS.get(effect)
    if known is None:
        return None, None
    answers = "; ".join(f"{c} {a}" for c, a in known.answers.items())
    text = f"the demo's planted effect is '{effect}' ({known.description}); expected: {answers}."
    return text, dict(known.answers)


def _demo_root(run_dir: Path, cells) -> Path | None:
    """The run's data root when it is a demo (it has the demo's marker), else None."""
    import yaml

    for metrics in runs.metrics_files(run_dir, cells):
        params = metrics.parent / "params.yaml"
        if not params.exists():
            continue
        root = (yaml.safe_load(params.read_text()) or {}).get("data_root")
        if root and (Path(str(root)) / "demo_complete.json").exists():
            return Path(str(root))
        return None
    return None


def _case_study_table(models: dict, context: dict) -> pd.DataFrame:
    """The case study's accuracies (%) with the hierarchical CI, per feature set and evaluation."""
    rows = []
    for (feature_set, label, evaluation), model in models.items():
        if not evaluation.startswith("case study"):
            continue
        stats = verdict.model_intervals(model, context)["accuracy"]
        rows.append(
            {
                "feature_set": feature_set,
                "model": label,
                "evaluation": evaluation.removeprefix("case study: "),
                "accuracy": stats["value"],
                "sd": stats["sd"],
                "95 % CI": _interval_text(stats),
                "seeds": len(model.seeds),
            }
        )
    return pd.DataFrame(rows)


def _bags_per_genre(run_dir: Path, cells) -> pd.DataFrame:
    """Training tracks and training bags per genre (bag training weighs each bag once)."""
    for path in runs.metrics_files(run_dir, cells):
        data = json.loads(path.read_text())
        tracks, bags = data.get("train_counts"), data.get("train_bag_counts")
        if tracks and bags:
            table = pd.DataFrame({"training tracks": tracks, "training bags": bags}).rename_axis("genre")
            table["tracks per bag"] = (table["training tracks"] / table["training bags"]).round(2)
            return table.reset_index()
    return pd.DataFrame()


def build_report(
    run_dir: str | Path, *, jobs: int = JOBS, cells: Iterable[str | Path] | None = None, n_boot: int = 1000
) -> Path:
    """Write ``<run_dir>/report/``: the verdict (forest plot and paragraph), ``paired.csv``, Tables
    I and II, AP, the case study, precision–recall, attention, rendered notebooks, ``index.html``.

    ``cells`` (cell folders, e.g. those of the params file the run was made from) restricts the
    report to them; by default it reads every cell of the run and lists them. ``jobs`` processes
    render the notebooks; ``n_boot`` replicates every interval.  A report of a run that a
    ``matt run`` is still writing says so on stderr and reads the cells finished so far.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise runs.ReportError(f"jobs must be an int >= 1, got {jobs!r}")
    run_dir = Path(run_dir)
    cells = None if cells is None else [Path(c) for c in cells]
    runs.check_run_folder(run_dir, cells)
    try:
        with folder_lock(run_dir, what="run folder"):  # no matt run starts on it meanwhile
            return _write_report(run_dir, jobs=jobs, cells=cells, n_boot=n_boot)
    except FolderLocked as held:
        print(f"reporting a run in progress ({held}); cells still running are left out", file=sys.stderr)
        return _write_report(run_dir, jobs=jobs, cells=cells, n_boot=n_boot)


def _write_report(run_dir: Path, *, jobs: int, cells: list[Path] | None, n_boot: int) -> Path:

    out = run_dir / "report"
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    frame = collect(run_dir, cells=cells)
    context = runs.run_context(run_dir, cells)
    models = runs.load_scores(frame)
    stats = seed_album_intervals(models, context, n_boot=n_boot)
    t1 = table1(frame, stats) if not frame.empty else pd.DataFrame()
    t2 = table2(frame, stats) if not frame.empty else pd.DataFrame()
    ap = ap_table(frame, stats) if not frame.empty else pd.DataFrame()
    paired = verdict.paired_table(models, context, n_boot=n_boot)
    case = _case_study_table(models, context)
    bags = _bags_per_genre(run_dir, cells)
    t1.to_csv(out / "table1.csv", index=False)
    t2.to_csv(out / "table2.csv", index=False)
    ap.to_csv(out / "average_precision.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    frame.to_csv(out / "all_metrics.csv", index=False)
    report_html.write_assets(out)
    links = report_html.render_notebooks(run_dir, out / "notebooks", jobs=jobs)
    known, answers = _known_answer(run_dir, cells)
    read = sorted({f"{r.notebook}/{r.cell}" for r in frame.itertuples()}) if not frame.empty else []

    def div(fig) -> str:
        return fig.to_html(full_html=False, include_plotlyjs=False, validate=False, config=report_html.PLOTLY_CONFIG)

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>MATT study — {html.escape(run_dir.name)}</title>",
        "<script src='plotly.min.js'></script>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:12px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;"
        "text-align:right}th{background:#f3f3f3}h2{margin-top:1.6em}.note{color:#555;font-size:13px}"
        ".verdict{font-size:15px;line-height:1.5;background:#f7f7f2;padding:0.8em 1em;border-left:4px solid #c0392b}"
        "</style>",
        "</head><body>",
        f"<h1>MATT study — run <code>{html.escape(run_dir.name)}</code></h1>",
        *(
            f"<p class='verdict'><b>This run allowed a leaking split</b> (allow_leakage): {html.escape(line)}. "
            "Test albums or artists were also seen in training, so every number below is optimistic.</p>"
            for line in runs.leakage_lines(run_dir, cells)
        ),
        "<h2>Do bags, and attention over them, help the rare genres?</h2>",
        f"<p class='verdict'>{html.escape(verdict.verdict_text(paired, known=answers, known_answer=known))}</p>",
        div(verdict.forest_figure(paired)),
        "<p class='note'>Each row: a paired difference A − B in percentage points on the same test albums; "
        "its 95 % interval comes from a hierarchical bootstrap (1,000 replicates) that resamples the training "
        "<b>seeds</b> of each model and the test <b>albums</b> (the same albums for A and B). ★: the interval "
        "excludes 0 after Holm's adjustment over the rows of this plot (<code>p_holm</code>; "
        "<code>p_holm_all</code> adjusts over every row of <code>paired.csv</code>); ●: only the raw interval "
        "does; n/e: not estimable, because fewer than 10 test albums hold the metric's tracks or the two "
        "models agree on every one of them (no bootstrap interval exists then). "
        "Models are selected on the validation split; the paper's authors selected on the test split. On the "
        "demo dataset the numbers describe synthetic music and say nothing about real music.</p>",
        "<details><summary>All paired comparisons (every metric, track and bag level; <code>paired.csv</code>)"
        "</summary>",
        report_html.format_table(paired) if not paired.empty else "<p>no comparable pairs in this run</p>",
        "</details>",
        "<h2>Table I — test accuracy (%) per feature set and model</h2>",
        "<p class='note'>Each cell: this study's test accuracy (± sd over seeds), the 95 % CI of the seed "
        "mean (hierarchical bootstrap over seeds and test albums), the paper's Table I in parentheses; the "
        "last columns give the test support. Each test track is scored with its model's prediction (a bag "
        "model's bag prediction goes to every track of the bag). <i>MLP (sklearn)</i>: FMA's scikit-learn "
        "baseline (the paper's MLP column); <i>MLP (torch)</i>: the encoder of MLP+MIL / MLP+MATT trained on "
        "single tracks, the like-for-like control; <i>(1/bag)</i>: the same, each track's loss weighted by "
        "1 / its bag's size, so that every album weighs as much as in bag training; <i>+late</i>: a "
        "track-level model's probabilities averaged over each test bag (no bag training; for the torch "
        "encoder, its epoch chosen on late-fused validation accuracy); <i>MATT (bilinear)</i>: MATT with "
        "the score s·(A q<sub>g</sub>), whose attention can rank tracks differently per genre.</p>",
        report_html.format_table(table1_wide(t1)) if not t1.empty else "<p>no model results yet</p>",
        "<details><summary>Table I in full (track- and bag-level accuracy, sd, seeds)</summary>",
        "<p class='note'><b>per_bag_accuracy</b>: test bags against their majority genre.</p>",
        report_html.format_table(t1) if not t1.empty else "",
        "</details>",
        "<h2>Table II — Top@K (%) on the tail genres</h2>",
        "<p class='note'><b>ours</b>: tail sets from the training counts (&lt;100, &lt;200 training tracks, "
        "placed between the same rarest genres on small data), per test track and per test <b>bag</b> (the "
        "paper's unit), with the 95 % CI over seeds and albums, or <i>not estimable</i> where the tail set's "
        "tracks lie in fewer than 10 test albums, and the support; <b>paper_sets</b>: the paper's own sets "
        "(its &lt;100 also held International); <b>published</b>: the paper's Table II, shown only beside "
        "the features the paper used (all 518 for LR … MLP+MATT, the log-mel for the CRNNs).</p>",
        report_html.format_table(t2[[c for c in t2.columns if not c.startswith("paper_sets")]])
        if not t2.empty
        else "<p>no model results yet</p>",
        "<details><summary>Table II on the paper's own tail sets</summary>",
        report_html.format_table(t2[[c for c in t2.columns if not c.startswith(("ours", "published"))]])
        if not t2.empty
        else "",
        "</details>",
        "<h2>Average precision</h2>",
        "<p class='note'>Macro AP: the mean over genres of one-vs-rest AP, each genre ranking the test tracks "
        "by its own score, so MATT's per-query scores (which need not sum to one) enter as they are; with "
        "its 95 % CI over seeds and albums. Micro AP pools all genres' scores and is dominated by the head "
        "genres.</p>",
        report_html.format_table(ap) if not ap.empty else "",
        "<h2>Training tracks and bags per genre</h2>",
        "<p class='note'>Bag training weighs each bag once (the loss is a mean over bags), so its effective "
        "class prior is bags per genre, not tracks per genre.</p>",
        report_html.format_table(bags) if not bags.empty else "",
        "<h2>Precision–recall</h2>",
        div(pr_figure(run_dir, cells=cells)),
    ]
    if not case.empty:
        parts += [
            "<h2>Case study — trained on bags, tested on single tracks</h2>",
            "<p class='note'>The paired differences of the case study are in <code>paired.csv</code> "
            "(questions starting 'bag training, tested on single tracks').</p>",
            report_html.format_table(case),
        ]
    parts += report_attention.sections(run_dir, cells=cells, div=div, demo_root=_demo_root(run_dir, cells))
    parts.append("<h2>Executed notebooks</h2><ul>")
    for notebook, cell, href in links:
        parts.append(f"<li><a href='{html.escape(href)}'>{html.escape(notebook)} / {html.escape(cell)}</a></li>")
    parts.append("</ul>")
    source = "the cells of the params file" if cells is not None else "every cell folder of the run"
    parts.append(f"<details><summary>{len(read)} cells read ({source})</summary><ul>")
    parts += [f"<li><code>{html.escape(c)}</code></li>" for c in read]
    parts.append(f"</ul></details>{report_html.SVG_EXPORT}</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index
