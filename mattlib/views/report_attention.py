"""The report's attention sections, read from a finished run's ``attention.json`` files: entropy
against bag size per pooling, every pooling's weights on one bag, (on a planted demo) how well
each pooling's attention finds the tracks that carry the genre, and a few bags' static figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.views import attention, report_html, widgets

__all__ = ["sections"]


def sections(run_dir: Path, *, cells, div, demo_root: Path | None) -> list[str]:
    """HTML parts of the attention sections; ``div`` renders a plotly figure, ``demo_root`` is the
    run's data root when it is a demo (its manifest knows which tracks carry the genre)."""
    parts = _across_poolings(run_dir, cells, div, demo_root)
    figures = _bag_figures(run_dir)
    if figures:
        parts += ["<h2>Attention over a few bags</h2>", *figures]
    return parts


def _bag_figures(run_dir: Path, *, max_bags: int = 3) -> list[str]:
    """Static plotly figures (HTML divs) of a few bags' attention, from attention.json files."""
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
            divs.append(fig.to_html(full_html=False, include_plotlyjs=False, config=report_html.PLOTLY_CONFIG))
    return divs


def _across_poolings(run_dir: Path, cells, div, demo_root: Path | None) -> list[str]:
    """Entropy against bag size per pooling, and every pooling's weights on the largest test bag."""
    models = attention.load_attention(run_dir, cells=cells)
    table = attention.entropy_table(models)
    if table.empty:
        return []
    largest = table.sort_values(["size", "bag_id"]).iloc[-1]["bag_id"]
    return [
        "<h2>Attention across poolings</h2>",
        "<p class='note'>Attention entropy divided by log(bag size): 1 = uniform (mean pooling, by "
        "construction), 0 = one track takes all. Paper-form MATT's weights differ by at most a factor e² "
        "within a bag, so its entropy stays near 1 in large bags. Below, every bag model's weights on the "
        "largest test bag, as softmax weights and as min–max-scaled raw scores (notebook 06 lets you pick the "
        "bag and the view).</p>",
        div(attention.entropy_figure(table)),
        div(attention.side_by_side_figure(models, largest, view="softmax")),
        div(attention.side_by_side_figure(models, largest, view="min-max")),
        *_recovery(run_dir, models, demo_root),
    ]


def _recovery(run_dir: Path, models: dict, root: Path | None) -> list[str]:
    """On a planted demo: does each pooling's attention find the tracks that carry the genre?"""
    manifest = None if root is None else root / "demo_manifest.csv"
    if manifest is None or not manifest.exists():
        return []
    frame = pd.read_csv(manifest)
    if "marked" not in frame:
        return []
    table = attention.recovery_table(models, frame.set_index("track_id")["marked"].astype(bool))
    table.to_csv(run_dir / "report" / "attention_recovery.csv", index=False)
    shown = table.assign(
        interval=[
            "not estimable" if lo is None or np.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"
            for lo, hi in zip(table["ci_low"], table["ci_high"])
        ]
    )[["model", "score", "mean", "interval", "bags"]]
    return [
        "<h3>Does attention find the tracks that carry the genre?</h3>",
        "<p class='note'>The demo generator knows which tracks of each album carry its genre (the "
        "<code>marked</code> tracks of <code>demo_manifest.csv</code>: only they carry it in the "
        "<i>attention</i> variant; in the other variants they carry nothing special, so every score must sit at "
        "chance). Per test bag (the true genre's query for MATT): <code>auc</code>, the AUC of the weights "
        "against those tracks (0.5 = chance), and <code>share_above_uniform</code>, their share of the weight "
        "minus the share a uniform weighting gives them (0 = chance); 95 % intervals over test albums "
        "(<code>attention_recovery.csv</code>).</p>",
        report_html.format_table(shown),
    ]
