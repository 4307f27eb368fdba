"""Gather a run's ``metrics.json`` files into the study's tables, figures and an HTML report.

``matt report outputs/<run>`` writes ``outputs/<run>/report/``:

- ``table1.csv`` — test accuracy (%) per feature set × model (mean, sd over seeds, album-bootstrap
  95 % CI, test tracks and albums), track-level and bag-level, beside the paper's Table I;
- ``table2.csv`` — Top@K (K = 2, 3, 5) on the tail genres with CIs and support (test tracks and
  albums per tail set), tail sets computed from the training counts and the paper's own sets,
  the paper's published row beside the feature set it used;
- ``paired.csv`` — paired differences in track accuracy on the same test albums (MATT − MIL,
  MATT − late fusion, MIL − late fusion, bag model − its track model), with a paired album
  bootstrap CI over seed-averaged correctness and the sd of the per-seed differences;
- ``pr_curves.png`` — micro-averaged precision–recall curves of every model;
- ``notebooks/*.html`` — every executed notebook rendered to HTML (plotly figures included);
- ``index.html`` — all of the above on one page, with static attention plots.

Each model notebook writes a ``metrics.json`` with a ``summary`` block (see
:func:`mattlib.study.experiment.ExperimentResult.metrics`); other notebooks' files are listed only.
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

from mattlib.evaluation.results import METRICS_FILE  # noqa: E402

__all__ = [
    "collect",
    "table1",
    "table2",
    "paired_comparisons",
    "paper_table1",
    "paper_table2",
    "plot_pr_curves",
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
_COLLECT_COLUMNS = ["notebook", "cell", *_IDENTITY, "path", *_HEADLINE]


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
            **{k: entry.get(k) for k in _IDENTITY},
            "path": str(path),
        }
        for key in (*_HEADLINE, "n_tracks", "n_bags", "n_albums"):
            row[key] = summary.get(key)
        for name, (low, high) in (summary.get("ci") or {}).items():
            row[f"ci_low|{name}"], row[f"ci_high|{name}"] = low, high
        for tail, by_k in (summary.get("top_k") or {}).items():
            for k, value in by_k.items():
                row[f"top_k|{tail}|{k}"] = value
        for tail, n in (summary.get("tail_support") or {}).items():
            row[f"support|{tail}"] = n
        for tail, n in (summary.get("tail_album_support") or {}).items():
            row[f"album_support|{tail}"] = n
        for genre, value in (summary.get("per_genre_recall") or {}).items():
            row[f"recall|{genre}"] = value
            row[f"count|{genre}"] = counts.get(genre)
        for group, value in (summary.get("group_recall") or {}).items():
            row[f"group|{group}"] = value
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else _COLLECT_COLUMNS)


def _mean_sd(group: pd.Series) -> tuple[float, float]:
    values = pd.to_numeric(group, errors="coerce").dropna() * 100
    if values.empty:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _ci(group: pd.DataFrame, name: str) -> tuple[float, float]:
    """Album-bootstrap CI (%) of a metric, averaged over seeds (NaN when not recorded)."""
    low, high = f"ci_low|{name}", f"ci_high|{name}"
    if low not in group:
        return np.nan, np.nan
    return _mean_sd(group[low])[0], _mean_sd(group[high])[0]


def _first(group: pd.DataFrame, column: str):
    values = group[column].dropna() if column in group else pd.Series(dtype=float)
    return int(values.iloc[0]) if len(values) else np.nan


def table1(frame: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy (%) per feature set and model: mean and sd over seeds, the album-bootstrap
    95 % CI (averaged over seeds), the test support, beside the paper.

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
        low, high = _ci(group, "track_accuracy")
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
                "ci_low": low,
                "ci_high": high,
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


def table2(frame: pd.DataFrame) -> pd.DataFrame:
    """Top@K (%) on the tail genres per model: ours (tail sets from training counts) with the
    album-bootstrap CI and the support (test tracks / albums of the tail set), the same models on
    the paper's tail sets, and the paper's published Table II row -- only beside the feature set
    the paper used for it (all 518 features for LR ... MLP+MATT, the log-mel for the CRNNs)."""
    frame = frame[frame["evaluation"] == "bags"] if "evaluation" in frame else frame
    paper = paper_table2()
    rows = []
    for (feature_set, label), group in frame.groupby(["feature_set", "label"], sort=False):
        row = {"feature_set": feature_set, "model": label, "n_seeds": len(group)}
        for family, prefix in (("", "ours"), ("paper", "paper_sets")):
            for tail in _TAIL_KEYS:
                row[f"{prefix} {tail} tracks"] = _first(group, f"support|{family}{tail}")
                row[f"{prefix} {tail} albums"] = _first(group, f"album_support|{family}{tail}")
                for k in _KS:
                    column = f"top_k|{family}{tail}|{k}"
                    value = _mean_sd(group[column])[0] if column in group else np.nan
                    row[f"{prefix} {tail} top{k}"] = value
                    low, high = _ci(group, f"top_k|{family}{tail}|{k}")
                    row[f"{prefix} {tail} top{k} CI"] = "" if np.isnan(low) else f"[{low:.1f}, {high:.1f}]"
        paper_label = _PAPER_NAMES.get(label, label)
        if paper_label not in paper.index or feature_set != _paper_feature_set(label):
            paper_label = None
        for tail, tag in (("<100", "lt100"), ("<200", "lt200")):
            for k in _KS:
                row[f"published {tail} top{k}"] = paper.loc[paper_label, f"{tag}_top{k}"] if paper_label else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _comparisons(labels: set[str]) -> list[tuple[str, str]]:
    """(A, B) label pairs to compare, A - B: MATT vs MIL, MATT vs late fusion, MIL vs late
    fusion, each bag model vs its track model, MATT (bilinear) vs MATT."""
    pairs = []
    for encoder, track in (("MLP", "MLP (torch)"), ("CRNN", "CRNN"), ("CRNN-TF", "CRNN-TF")):
        matt, mil, late = f"{encoder}+MATT", f"{encoder}+MIL", f"{track}+late"
        wanted = [(matt, mil), (matt, late), (mil, late), (f"{encoder}+MATT (bilinear)", matt)]
        wanted += [(bag, track) for bag in (mil, matt, f"{encoder}+MATT (bilinear)", f"{encoder}+gated")]
        pairs += [(a, b) for a, b in wanted if a in labels and b in labels]
    return pairs


def paired_comparisons(frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Paired differences in test track accuracy (percentage points) between models of one
    feature set, on the same test tracks.

    For each pair (see :func:`_comparisons`) and the seeds both ran: ``difference`` is the mean
    over seeds of A − B; ``ci_low`` / ``ci_high`` a paired bootstrap over **albums** of the
    difference in seed-averaged correctness (:func:`mattlib.evaluation.metrics.paired_difference`, the same
    albums for both models in each replicate); ``seed_sd`` the sd of the per-seed differences;
    ``a_wins`` / ``b_wins`` the test tracks only A (only B) gets right, summed over seeds.
    Reads each cell's ``predictions.csv``.
    """
    from mattlib.evaluation.metrics import paired_difference

    columns = [
        "feature_set",
        "comparison",
        "n_seeds",
        "difference",
        "ci_low",
        "ci_high",
        "seed_sd",
        "a_wins",
        "b_wins",
        "test_tracks",
        "test_albums",
    ]
    if frame.empty or "path" not in frame:
        return pd.DataFrame(columns=columns)
    frame = frame[frame["evaluation"] == "bags"]
    correct: dict[tuple[str, str, int], pd.DataFrame] = {}
    for _, row in frame.iterrows():
        path = Path(row["path"]).parent / "predictions.csv"
        column = f"pred {row['label']}"
        if not path.exists():
            continue
        preds = pd.read_csv(path)
        if column not in preds or "album" not in preds:
            continue
        correct[(row["feature_set"], row["label"], int(row["seed"]))] = pd.DataFrame(
            {
                "album": preds["album"].astype(str).to_numpy(),
                "correct": (preds[column] == preds["genre"]).astype(float).to_numpy(),
            },
            index=preds["track_id"].to_numpy(),
        )
    rows = []
    for feature_set, group in frame.groupby("feature_set", sort=False):
        for a, b in _comparisons(set(group["label"])):
            seeds = sorted(
                {s for (f, lab, s) in correct if f == feature_set and lab == a}
                & {s for (f, lab, s) in correct if f == feature_set and lab == b}
            )
            if not seeds:
                continue
            ca = pd.concat([correct[(feature_set, a, s)]["correct"] for s in seeds], axis=1)
            cb = pd.concat([correct[(feature_set, b, s)]["correct"] for s in seeds], axis=1)
            tracks = ca.index.intersection(cb.index)
            ca, cb = ca.loc[tracks], cb.loc[tracks]
            albums = correct[(feature_set, a, seeds[0])].loc[tracks, "album"]
            paired = paired_difference(ca.mean(axis=1), cb.mean(axis=1), albums.to_numpy(), n_boot=n_boot, seed=seed)
            per_seed = (ca.to_numpy() - cb.to_numpy()).mean(axis=0) * 100
            rows.append(
                {
                    "feature_set": feature_set,
                    "comparison": f"{a} − {b}",
                    "n_seeds": len(seeds),
                    "difference": float(per_seed.mean()),
                    "ci_low": 100 * paired["low"],
                    "ci_high": 100 * paired["high"],
                    "seed_sd": float(np.std(per_seed, ddof=1)) if len(seeds) > 1 else np.nan,
                    "a_wins": int(((ca.to_numpy() == 1) & (cb.to_numpy() == 0)).sum()),
                    "b_wins": int(((ca.to_numpy() == 0) & (cb.to_numpy() == 1)).sum()),
                    "test_tracks": paired["n_tracks"],
                    "test_albums": paired["n_units"],
                }
            )
    return pd.DataFrame(rows, columns=columns)


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
    from mattlib.views import widgets

    divs = []
    # MATT / gated attention first (mean pooling's weights are uniform by construction)
    paths = sorted(
        run_dir.glob("05_matt/*/attention.json"),
        key=lambda p: ("matt" not in p.parent.name, "mel" in p.parent.name, p.parent.name),
    )
    paths = paths or sorted(run_dir.glob("*/*/attention.json"))
    for path in paths[:3]:
        data = json.loads(path.read_text())
        for fig in widgets.static_attention_figures(data, max_bags=max_bags):
            fig.update_layout(title=f"{path.parent.parent.name}/{path.parent.name}: {fig.layout.title.text}")
            divs.append(fig.to_html(full_html=False, include_plotlyjs=False))
    return divs


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


def _format(table: pd.DataFrame) -> str:
    return table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.2f}", border=0, classes="table")


def build_report(run_dir: str | Path, *, jobs: int = 1) -> Path:
    """Write ``<run_dir>/report/`` (tables, PR figure, rendered notebooks, ``index.html``);
    ``jobs`` processes render the notebooks."""
    from mattlib.views import report_html

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    out = run_dir / "report"
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    frame = collect(run_dir)
    t1 = table1(frame) if not frame.empty else pd.DataFrame()
    t2 = table2(frame) if not frame.empty else pd.DataFrame()
    paired = paired_comparisons(frame)
    t1.to_csv(out / "table1.csv", index=False)
    t2.to_csv(out / "table2.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    frame.to_csv(out / "all_metrics.csv", index=False)
    fig = plot_pr_curves(run_dir)
    fig.savefig(out / "pr_curves.png", dpi=120)
    plt.close(fig)
    report_html.write_assets(out)
    links = report_html.render_notebooks(run_dir, out / "notebooks", jobs=jobs)
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
        "<p class='note'>Each cell: this study's test accuracy (± sd over seeds), its 95 % CI from a "
        "bootstrap over test <b>albums</b> (1,000 replicates, the same unit for every model), the "
        "paper's Table I in parentheses; the last columns give the test support. Each test track is "
        "scored with its model's prediction (a bag model's bag prediction goes to every track of the "
        "bag). <i>MLP (sklearn)</i>: FMA's scikit-learn baseline (the paper's MLP column); "
        "<i>MLP (torch)</i>: the encoder of MLP+MIL / MLP+MATT trained on single tracks, the "
        "like-for-like control; <i>+late</i>: a track-level model's probabilities averaged over "
        "each test bag (no bag training); <i>MATT (bilinear)</i>: MATT with the score "
        "s·(A q<sub>g</sub>), whose attention can rank tracks differently per genre.</p>",
        _format(table1_wide(t1)) if not t1.empty else "<p>no model results yet</p>",
        "<details><summary>Table I in full (track- and bag-level accuracy, sd, seeds)</summary>",
        "<p class='note'><b>per_bag_accuracy</b>: test bags against their majority genre.</p>",
        _format(t1) if not t1.empty else "",
        "</details>",
        "<h2>Paired comparisons — the same test albums</h2>",
        "<p class='note'>Difference in test track accuracy (percentage points, A − B, mean over the "
        "seeds both ran), its 95 % CI from a paired bootstrap over test albums of the seed-averaged "
        "correctness, the sd of the per-seed differences, and the tracks only A / only B gets "
        "right. A CI that holds 0 says the test set cannot tell the two models apart.</p>",
        _format(paired) if not paired.empty else "<p>no comparable pairs in this run</p>",
        "<h2>Table II — Top@K (%) on the tail genres</h2>",
        "<p class='note'><b>ours</b>: tail sets from the training counts (&lt;100, &lt;200 training tracks, "
        "placed between the same rarest genres on small data), with the album-bootstrap 95 % CI and the "
        "support (<b>tracks</b>, <b>albums</b>: how few test items decide these numbers); "
        "<b>paper_sets</b>: the paper's own sets (its &lt;100 also held International); "
        "<b>published</b>: the paper's Table II, shown only beside the features the paper used "
        "(all 518 for LR … MLP+MATT, the log-mel for the CRNNs).</p>",
        _format(t2[[c for c in t2.columns if not c.startswith("paper_sets")]])
        if not t2.empty
        else "<p>no model results yet</p>",
        "<details><summary>Table II on the paper's own tail sets</summary>",
        _format(t2[[c for c in t2.columns if not c.startswith(("ours", "published"))]]) if not t2.empty else "",
        "</details>",
        "<h2>Precision–recall</h2><img src='pr_curves.png' style='max-width:1100px'>",
    ]
    if case_rows:
        parts += ["<h2>Case study — trained on bags, tested on single tracks</h2>", _format(pd.DataFrame(case_rows))]
    if attention:
        parts += ["<h2>Attention over a few bags</h2>", *attention]
    parts.append("<h2>Executed notebooks</h2><ul>")
    for notebook, cell, href in links:
        parts.append(f"<li><a href='{html.escape(href)}'>{html.escape(notebook)} / {html.escape(cell)}</a></li>")
    parts.append("</ul></body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index
