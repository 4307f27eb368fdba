"""The study's answer: do bags, and attention over them, help the rare genres?

:func:`paired_table` compares models on the **same test albums**, for the comparisons the question
is about (bag model − its track model, MIL − late fusion, MATT − MIL, MATT − late fusion,
MATT (bilinear) − MIL, per encoder, and the case study) and for the metrics the paper's claim
rests on: overall accuracy, Top@K (K = 2, 3, 5) on the ``<100`` / ``<200`` tail sets at track and
bag level, recall on the tail sets and in the head / medium / tail groups. Every interval is the
hierarchical bootstrap of :mod:`mattlib.evaluation.uncertainty` (seeds and albums); every
p-value is Holm-adjusted over all the rows the table holds. :func:`forest_figure` draws the
headline rows; :func:`verdict_text` writes the paragraph from the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mattlib.evaluation import uncertainty as unc
from mattlib.views.runs import ModelScores

__all__ = ["COMPARISONS", "comparisons", "model_intervals", "paired_table", "forest_figure", "verdict_text"]

#: (A, B, what the difference isolates) per encoder; ``{e}`` is the encoder's bag label, ``{t}``
#: its track-level label.
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("{e}+MIL", "{t}", "bags (mean pooling) vs single tracks"),
    ("{e}+MATT", "{t}", "bags (MATT) vs single tracks"),
    ("{e}+MATT (bilinear)", "{t}", "bags (MATT bilinear) vs single tracks"),
    ("{e}+gated", "{t}", "bags (gated attention) vs single tracks"),
    ("{e}+MIL", "{t} (1/bag)", "bags vs single tracks weighted as bags"),
    ("{e}+MIL", "{t} (1/bag)+late", "bag training vs late fusion weighted as bags"),
    ("{e}+MIL", "{t}+late", "bag training vs late fusion"),
    ("{e}+MATT", "{e}+MIL", "attention vs mean pooling"),
    ("{e}+MATT", "{t}+late", "attention vs late fusion"),
    ("{e}+MATT (bilinear)", "{e}+MIL", "genre-specific attention vs mean pooling"),
)
_ENCODERS = (("MLP", "MLP (torch)"), ("CRNN", "CRNN"), ("CRNN-TF", "CRNN-TF"))
_CASE_STUDY = (
    ("case study: single", "case study: trained on single", "bag training, tested on single tracks"),
    ("case study: bags", "case study: trained on single", "bags at test vs single-track training"),
)
#: The rows the forest plot and the verdict show (metric names of :func:`_metrics`).
HEADLINE_METRICS = ("accuracy", "top2 <100", "top3 <100", "top2 <200", "tail recall")
_FOREST_COMPARISONS = (
    "bags (mean pooling) vs single tracks",
    "bag training vs late fusion",
    "attention vs mean pooling",
    "attention vs late fusion",
    "genre-specific attention vs mean pooling",
)


def comparisons(labels: set[str]) -> list[tuple[str, str, str]]:
    """The (A, B, question) pairs of :data:`COMPARISONS` whose two models are both in ``labels``."""
    pairs = []
    for encoder, track in _ENCODERS:
        for a, b, question in COMPARISONS:
            a, b = a.format(e=encoder, t=track), b.format(e=encoder, t=track)
            if a in labels and b in labels:
                pairs.append((a, b, question))
    return pairs


@dataclass(frozen=True)
class _Level:
    """Items of one level (tracks, or album bags) of a test set, and each item's album."""

    test: unc.TestSet
    rows: np.ndarray  # per item, the track rows whose scores it averages
    name: str


def _levels(tracks: pd.DataFrame, classes: list[str]) -> dict[str, _Level]:
    index = {c: i for i, c in enumerate(classes)}
    y = tracks["genre"].map(index).to_numpy(dtype=np.int64)
    track_level = _Level(unc.TestSet.from_labels(y, tracks["album"].to_numpy()), np.arange(len(tracks)), "track")
    bag_codes, bag_ids = pd.factorize(tracks["bag_id"])
    first = np.unique(bag_codes, return_index=True)[1]
    album_codes = track_level.test.units
    bag_test = unc.TestSet(
        y=tracks["bag_genre"].map(index).to_numpy(dtype=np.int64)[first],
        units=album_codes[first],
        n_units=track_level.test.n_units,
    )
    return {"track": track_level, "bag": _Level(bag_test, bag_codes, "bag")}


def _bag_scores(scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(S, n_bags, C) mean score of each album bag's tracks (a bag model's bag scores; late
    fusion for a track-level model)."""
    n_bags = int(codes.max()) + 1
    out = np.zeros((scores.shape[0], n_bags, scores.shape[2]))
    np.add.at(out, (slice(None), codes), scores)
    return out / np.bincount(codes, minlength=n_bags)[None, :, None]


def _metrics(context: dict, classes: list[str]) -> list[tuple[str, str, unc.Metric]]:
    """(level, name, metric) of the paired table."""
    index = {c: i for i, c in enumerate(classes)}
    tails = {k: [index[g] for g in v if g in index] for k, v in (context.get("tail_sets") or {}).items()}
    groups = {k: [index[g] for g in v if g in index] for k, v in (context.get("groups") or {}).items()}
    out: list[tuple[str, str, unc.Metric]] = [("track", "accuracy", unc.top_k(1))]
    for tail, genres in tails.items():
        if not genres:
            continue
        for level in ("track", "bag"):
            for k in (2, 3, 5):
                out.append((level, f"top{k} {tail}", unc.top_k(k, genres)))
        out.append(("track", f"recall {tail}", unc.mean_recall(genres, name=f"recall {tail}")))
    for group in ("head", "medium", "tail"):
        if groups.get(group):
            name = "tail recall" if group == "tail" else f"{group} recall"
            out.append(("track", name, unc.mean_recall(groups[group], name=name)))
    out.append(("track", "macro AP", unc.macro_average_precision(len(classes))))
    return out


def _values(model: ModelScores, track_ids, level: _Level, metric: unc.Metric, weights) -> np.ndarray:
    scores = model.on(track_ids)
    if level.name == "bag":
        scores = _bag_scores(scores, level.rows)
    return unc.metric_values(metric, scores, level.test, weights)


def _support(level: _Level, metric: unc.Metric) -> tuple[int, int]:
    mask = metric.subset(level.test)
    return int(mask.sum()), level.test.albums_in(mask)


def paired_table(
    models: dict[tuple[str, str, str], ModelScores],
    context: dict,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_albums: int = unc.MIN_ALBUMS,
) -> pd.DataFrame:
    """Paired differences A − B (percentage points) on the same test albums.

    Parameters
    ----------
    models : {(feature set, label, evaluation): ModelScores}
        From :func:`mattlib.views.runs.load_scores`.
    context : dict
        :func:`mattlib.views.runs.run_context` (tail sets and frequency groups).
    n_boot, seed, level
        Replicates, seed and level of the hierarchical bootstrap (seeds and albums).
    min_albums : int
        Fewer test albums than this in a metric's subset: no interval ("not estimable").

    Returns
    -------
    DataFrame, one row per comparison × metric: ``feature_set``, ``comparison``, ``question``,
    ``metric``, ``level`` (track / bag), ``difference``, ``ci_low``, ``ci_high``, ``p``, ``p_holm``
    (Holm over the headline family: the forest plot's estimable rows, :func:`forest_rows`),
    ``p_holm_all`` (Holm over every estimable row), ``excludes_0`` (the raw interval),
    ``excludes_0_holm``, ``headline``,
    ``seeds_a``, ``seeds_b``, ``items`` and ``albums`` (the metric's test support), ``note``.
    Bag-level rows compare album bags (a bag's scores: its model's bag scores, for a track model
    the late fusion of its tracks), so comparisons with a plain track model are track level only.
    """
    rows = []
    features = sorted({k[0] for k in models}, key=[k[0] for k in models].index)
    for feature_set in features:
        mine = {k[1]: m for k, m in models.items() if k[0] == feature_set and k[2] == "bags"}
        pairs = [(mine[a], mine[b], q) for a, b, q in comparisons(set(mine))]
        cases = {k[2]: m for k, m in models.items() if k[0] == feature_set and k[2].startswith("case study")}
        pairs += [(cases[a], cases[b], q) for a, b, q in _CASE_STUDY if a in cases and b in cases]
        for a, b, question in pairs:
            rows += _compare(a, b, question, context, n_boot=n_boot, seed=seed, level=level, min_albums=min_albums)
    table = pd.DataFrame(rows, columns=_PAIRED_COLUMNS)
    if not table.empty:
        headline = _headline(table).to_numpy()
        table["headline"] = headline
        p = table["p"].to_numpy(dtype=float)
        table["p_holm"] = unc.holm(np.where(headline, p, np.nan))
        table["p_holm_all"] = unc.holm(p)
        table["excludes_0_holm"] = table["p_holm"] < (1 - level)
    return table


_PAIRED_COLUMNS = [
    "feature_set",
    "comparison",
    "question",
    "metric",
    "level",
    "difference",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "p_holm_all",
    "excludes_0",
    "excludes_0_holm",
    "headline",
    "seeds_a",
    "seeds_b",
    "items",
    "albums",
    "note",
]


def _is_track_model(model: ModelScores) -> bool:
    return not any(s in model.label for s in ("+MIL", "+MATT", "+gated", "+late")) or model.evaluation != "bags"


def _compare(a: ModelScores, b: ModelScores, question: str, context: dict, *, n_boot, seed, level, min_albums):
    track_ids = np.intersect1d(a.tracks["track_id"], b.tracks["track_id"])
    tracks = a.tracks.set_index("track_id").loc[track_ids].reset_index()
    levels = _levels(tracks, a.classes)
    weights = unc.album_counts(levels["track"].test.n_units, n_boot=n_boot, seed=seed)
    out = []
    for level_name, name, metric in _metrics(context, a.classes):
        if level_name == "bag" and (_is_track_model(a) or _is_track_model(b)) and a.evaluation == "bags":
            continue
        lv = levels[level_name]
        w_items = weights[:, lv.test.units]
        ones = np.ones((1, len(lv.test.y)))
        point = np.nanmean(_values(a, track_ids, lv, metric, ones)) - np.nanmean(
            _values(b, track_ids, lv, metric, ones)
        )
        items, albums = _support(lv, metric)
        row = {
            "feature_set": a.feature_set,
            "comparison": f"{a.label} − {b.label}" if a.evaluation == "bags" else f"{a.evaluation} − {b.evaluation}",
            "question": question,
            "metric": name,
            "level": level_name,
            "difference": 100 * point,
            "seeds_a": len(a.seeds),
            "seeds_b": len(b.seeds),
            "items": items,
            "albums": albums,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "p": np.nan,
            "excludes_0": False,
            "note": "",
        }
        if albums < min_albums:
            row["note"] = f"not estimable ({albums} albums < {min_albums})"
        else:
            da = unc.replicates(_values(a, track_ids, lv, metric, w_items), n_boot=n_boot, seed=seed + 1)
            db = unc.replicates(_values(b, track_ids, lv, metric, w_items), n_boot=n_boot, seed=seed + 2)
            low, high = unc.interval(da - db, level=level)
            if high - low < 1e-12:  # every replicate alike: A and B agree on every item of the subset
                row["note"] = f"not estimable (A and B agree on all {items} items, {albums} albums)"
            else:
                row.update(ci_low=100 * low, ci_high=100 * high, p=unc.p_value(da - db))
                row["excludes_0"] = bool(low > 0 or high < 0)
        out.append(row)
    return out


def model_intervals(
    model: ModelScores,
    context: dict,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_albums: int = unc.MIN_ALBUMS,
) -> dict[str, dict]:
    """Per metric of one model: ``value`` (mean over seeds, %), ``sd`` over seeds, ``ci_low`` /
    ``ci_high`` (hierarchical bootstrap of the seed mean, %; NaN when not estimable), ``albums``."""
    levels = _levels(model.tracks, model.classes)
    weights = unc.album_counts(levels["track"].test.n_units, n_boot=n_boot, seed=seed)
    out = {}
    for level_name, name, metric in _metrics(context, model.classes):
        lv = levels[level_name]
        ones = np.ones((1, len(lv.test.y)))
        per_seed = _values(model, model.tracks["track_id"].to_numpy(), lv, metric, ones)[:, 0]
        items, albums = _support(lv, metric)
        low = high = np.nan
        if albums >= min_albums:
            draws = unc.replicates(
                _values(model, model.tracks["track_id"].to_numpy(), lv, metric, weights[:, lv.test.units]),
                n_boot=n_boot,
                seed=seed + 1,
            )
            low, high = unc.interval(draws, level=level)
            if high - low < 1e-12:  # e.g. 0 % on every replicate: no interval from a bootstrap
                low = high = np.nan
        key = name if level_name == "track" else f"bag {name}"
        out[key] = {
            "value": 100 * float(np.nanmean(per_seed)),
            "sd": 100 * float(np.nanstd(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "ci_low": 100 * low,
            "ci_high": 100 * high,
            "albums": albums,
            "items": items,
        }
    return out


def _headline(paired: pd.DataFrame) -> pd.Series:
    keep = paired["question"].isin(_FOREST_COMPARISONS) & paired["metric"].isin(HEADLINE_METRICS)
    return keep & (paired["level"] == "track")


def forest_rows(paired: pd.DataFrame) -> pd.DataFrame:
    """The headline rows of the paired table: the study's comparisons × the claim's metrics (the
    family Holm's adjustment of ``p_holm`` runs over)."""
    if paired.empty:
        return paired
    return paired[_headline(paired)]


def forest_figure(paired: pd.DataFrame):
    """Forest plot (plotly) of :func:`forest_rows`: one row per comparison × metric with its
    interval, a zero line, the support (albums, seeds) and the rows whose interval excludes 0
    after Holm's adjustment marked ★ (● raw interval only); not estimable rows are listed without
    an interval."""
    import plotly.graph_objects as go

    rows = forest_rows(paired).iloc[::-1]
    if rows.empty:
        return go.Figure().update_layout(title="No comparable models in this run")
    names = [
        f"{r.comparison} [{r.feature_set}] · {r.metric} ({r.albums} albums, {r.seeds_a}/{r.seeds_b} seeds)"
        for r in rows.itertuples()
    ]
    marks = [
        "★" if r.excludes_0_holm else "●" if r.excludes_0 else ("n/e" if r.note else "") for r in rows.itertuples()
    ]
    color = ["#c0392b" if r.excludes_0_holm else "#e67e22" if r.excludes_0 else "#34495e" for r in rows.itertuples()]
    estimable = rows["ci_low"].notna().to_numpy()
    fig = go.Figure(
        go.Scatter(
            x=rows["difference"],
            y=names,
            mode="markers+text",
            text=marks,
            textposition="middle right",
            marker=dict(size=8, color=color, symbol=np.where(estimable, "circle", "circle-open")),
            error_x=dict(
                type="data",
                symmetric=False,
                array=(rows["ci_high"] - rows["difference"]).fillna(0),
                arrayminus=(rows["difference"] - rows["ci_low"]).fillna(0),
                thickness=1.4,
            ),
            customdata=np.stack([rows["ci_low"], rows["ci_high"], rows["p_holm"], rows["note"]], axis=1),
            hovertemplate="%{y}<br>A − B = %{x:.1f} pp [%{customdata[0]:.1f}, %{customdata[1]:.1f}]"
            "<br>Holm p = %{customdata[2]:.3f} %{customdata[3]}<extra></extra>",
        )
    )
    fig.add_vline(x=0, line_color="#888", line_dash="dash")
    fig.update_layout(
        title="Paired differences A − B on the same test albums (percentage points, 95 % CI over seeds and albums)",
        height=140 + 22 * len(rows),
        margin=dict(l=10, r=30, t=60, b=40),
        xaxis_title="A − B (percentage points); ★ excludes 0 after Holm, ● raw interval only, n/e not estimable",
        yaxis=dict(automargin=True, tickfont=dict(size=11)),
    )
    return fig


#: The planted comparison (:data:`mattlib.data.planted.COMPARISONS`) a question answers.
PLANTED = {
    "bags (mean pooling) vs single tracks": "bag − track",
    "bag training vs late fusion": "MIL − late",
    "attention vs mean pooling": "MATT − MIL",
    "attention vs late fusion": "MATT − late",
}
_PHRASES = (
    ("bags (mean pooling) vs single tracks", "Bags (mean pooling) against single tracks"),
    ("bag training vs late fusion", "bag training against late fusion"),
    ("attention vs mean pooling", "MATT against mean pooling"),
    ("genre-specific attention vs mean pooling", "MATT (bilinear) against mean pooling"),
)


def _said(r) -> str:
    if r.note.startswith("not estimable (A and B agree"):
        return f"{r.metric} identical on every one of its {r.items} tracks"
    if r.note:
        return f"{r.metric} {r.difference:+.1f} pp, {r.note}"
    mark = " ★" if r.excludes_0_holm else " (raw interval excludes 0)" if r.excludes_0 else ""
    return f"{r.metric} {r.difference:+.1f} pp [{r.ci_low:+.1f}, {r.ci_high:+.1f}]{mark}"


def verdict_text(paired: pd.DataFrame, *, known: dict[str, str] | None = None, known_answer: str | None = None) -> str:
    """One paragraph, written from the numbers, answering "do bags, and attention, help?".

    ``known`` (planted comparison -> "+", "0" or "?", e.g. a demo effect's answers) adds whether
    each planted answer was found on overall accuracy; ``known_answer`` is printed as it is.
    """
    if paired.empty:
        return "No pair of comparable models ran, so this run cannot answer whether bags or attention help."
    head = forest_rows(paired)
    n_head = int(head["p"].notna().sum())
    n_all = int(paired["p"].notna().sum())
    parts = [
        f"The report makes {len(paired)} paired comparisons ({n_all} with an interval); the {len(head)} headline "
        f"rows of the forest plot ({n_head} with an interval) are one family for Holm's adjustment (★)."
    ]
    for question, phrase in _PHRASES:
        rows = head[head["question"] == question]
        for (comparison, feature_set), group in rows.groupby(["comparison", "feature_set"], sort=False):
            said = [_said(r) for r in group.itertuples() if r.metric in ("accuracy", "top2 <100", "tail recall")]
            parts.append(f"{phrase} ({comparison} [{feature_set}]): " + "; ".join(said) + ".")
    n_sig = int(head["excludes_0_holm"].sum())
    parts.append(
        f"{n_sig} of the {n_head} headline differences {'excludes' if n_sig == 1 else 'exclude'} 0 after Holm."
    )
    if known:
        found = []
        for question, planted in PLANTED.items():
            answer = known.get(planted)
            rows = head[(head["question"] == question) & (head["metric"] == "accuracy")]
            if answer in ("+", "0") and not rows.empty:
                # the feature set the demo plants its effect in (all 518 statistics), where it ran
                r = rows[rows["feature_set"] == "all"].iloc[0] if (rows["feature_set"] == "all").any() else rows.iloc[0]
                if answer == "+":
                    ok = "found" if r.excludes_0 and r.difference > 0 else "not found"
                else:
                    ok = "consistent" if not r.excludes_0 else "not consistent (the raw interval excludes 0)"
                found.append(f"{planted} planted {answer}: {ok}")
        if found:
            parts.append("Against the planted answer (accuracy, raw interval): " + "; ".join(found) + ".")
    if known_answer:
        parts.append(f"Known answer of this dataset: {known_answer}")
    return " ".join(parts)
