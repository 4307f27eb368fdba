"""Does the study find the effects planted in the demo, and only those? (a benchmark, not a test)

For each planted variant (``null``, ``bag``, ``attention``; :mod:`mattlib.data.planted`) and each
replication (a fresh features-only demo, :func:`mattlib.data.demo.generate_demo_features`, with
its own seed), the script trains the comparison's models on all 518 features with several seeds
each (the torch MLP on single tracks with its late fusion, the same weighted 1 / bag size,
MLP+MIL, MLP+MATT, MLP+MATT (bilinear)), writes them as a run folder exactly as the notebooks do,
and computes the report's paired table (:func:`mattlib.views.verdict.paired_table`: intervals over
seeds and albums). It then counts, per variant, comparison and metric, how often the interval
holds 0 and how often it excludes 0 in each direction, and scores the attention of each pooling
against the generator's truth (which tracks carry the genre): the per-bag AUC of the weights and
the weight share on informative tracks against the uniform share, with album-bootstrap intervals.

What to read: under ``null`` every interval should hold 0 at about its nominal rate (95 %); each
planted comparison ("+" in :data:`mattlib.data.planted.EFFECTS`) should exclude 0 upwards.

Usage::

    python benchmarks/planted.py                       # 4 replications x 3 seeds per variant
    python benchmarks/planted.py --replications 10 --seeds 3 --epochs 30

Writes ``outputs/benchmarks/planted.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mattlib.atomic import write_json  # noqa: E402
from mattlib.data import demo, planted  # noqa: E402
from mattlib.study import experiment  # noqa: E402
from mattlib.study.settings import Settings  # noqa: E402
from mattlib.views import attention, report, runs, verdict  # noqa: E402

#: (cell name, settings) of every model a replication trains per seed.
MODELS = (
    ("track", {"pooling": "none"}),
    ("track-1bag", {"pooling": "none", "track_weighting": "bag"}),
    ("mil", {"pooling": "mean"}),
    ("matt", {"pooling": "matt"}),
    ("matt-dot", {"pooling": "matt", "matt_score": "dot"}),
    ("gated", {"pooling": "gated"}),
    ("max", {"pooling": "max"}),
)
#: The planted comparison each report question answers (:data:`mattlib.data.planted.COMPARISONS`).
QUESTIONS = {
    "bags (mean pooling) vs single tracks": "bag − track",
    "bag training vs late fusion": "MIL − late",
    "attention vs mean pooling": "MATT − MIL",
    "attention vs late fusion": "MATT − late",
    "genre-specific attention vs mean pooling": "MATT − MIL",
}
METRICS = ("accuracy", "top2 <100", "top2 <200", "tail recall")


def train_replication(root: Path, run: Path, *, seeds: int, epochs: int) -> None:
    """Train every model of :data:`MODELS` with each seed and save it under ``run``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = Settings(data_root=root, cache_dir=run / "cache", feature_set="all", model="mlp")
        data = experiment.load(base)
    for seed in range(seeds):
        for name, changes in MODELS:
            settings = base.replace(seed=seed, epochs=epochs, patience=8, hidden=(256, 128), **changes)
            result = experiment.run_bag_model(data, settings, progress=False)
            result.save(run / "cells" / f"{name}-{seed}")


def attention_recovery(run: Path, manifest: pd.DataFrame, *, n_boot: int = 1000) -> dict:
    """Per pooling (seed 0): :func:`mattlib.views.attention.recovery` against the tracks that carry
    the genre (the ``marked`` draw, the same for every variant of one seed: under ``null`` and
    ``bag`` it carries nothing, so the scores must sit at chance)."""
    carries = manifest.set_index("track_id")["marked" if "marked" in manifest else "informative"].astype(bool)
    out = {}
    for path in sorted((run / "cells").glob("*-0/attention.json")):
        data = json.loads(path.read_text())
        test = [b for b in data["bags"] if b.get("split", "test") == "test"]
        out[data["model"]] = attention.recovery(test, carries, n_boot=n_boot)
    return out


def summarise_recovery(recovery: dict[str, list[dict]]) -> list[dict]:
    """Per effect × pooling: the replications' mean AUC and weight share above uniform, and how many
    of their album intervals hold chance (AUC 0.5, share 0)."""
    out = []
    for effect, replications in recovery.items():
        for model in sorted({m for r in replications for m in r}):
            row = {"effect": effect, "model": model, "replications": len(replications)}
            for score, chance in (("auc", 0.5), ("share_above_uniform", 0.0)):
                found = [r[model][score] for r in replications if model in r and r[model][score]["mean"] is not None]
                row[f"{score} mean"] = float(np.mean([f["mean"] for f in found])) if found else None
                # 1e-4: attention.json keeps 5 decimals, so uniform weights sum to 1 +- a few 1e-5
                row[f"{score} holds chance"] = sum(f["ci_low"] - 1e-4 <= chance <= f["ci_high"] + 1e-4 for f in found)
            out.append(row)
    return out


def summarise(rows: pd.DataFrame) -> list[dict]:
    """Per effect × comparison × metric: replications, mean difference, share of intervals holding 0,
    excluding it upwards and downwards, and the known answer."""
    out = []
    for (effect, question, metric), group in rows.groupby(["effect", "question", "metric"], sort=False):
        estimable = group[group["ci_low"].notna()]
        known = planted.EFFECTS[effect].answers.get(QUESTIONS.get(question, ""), "?")
        out.append(
            {
                "effect": effect,
                "question": question,
                "metric": metric,
                "known": known,
                "replications": int(len(group)),
                "estimable": int(len(estimable)),
                "mean_difference": float(group["difference"].mean()),
                "holds_0": float(((estimable["ci_low"] <= 0) & (estimable["ci_high"] >= 0)).mean())
                if len(estimable)
                else None,
                "excludes_0_up": float((estimable["ci_low"] > 0).mean()) if len(estimable) else None,
                "excludes_0_down": float((estimable["ci_high"] < 0).mean()) if len(estimable) else None,
            }
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--effects", default=",".join(planted.EFFECTS))
    parser.add_argument("--replications", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-tracks", type=int, default=600)
    parser.add_argument("--out", default="outputs/benchmarks/planted.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    effects = [planted.check_effect(e) for e in args.effects.split(",")]
    rows, recovery, started = [], {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        for effect in effects:
            for rep in range(args.replications):
                t0 = time.perf_counter()
                root = demo.generate_demo_features(
                    Path(tmp) / f"{effect}-{rep}", effect=effect, n_tracks=args.n_tracks, seed=rep
                )
                run = Path(tmp) / f"run-{effect}-{rep}"
                train_replication(root, run, seeds=args.seeds, epochs=args.epochs)
                frame = report.collect(run)
                paired = verdict.paired_table(runs.load_scores(frame), runs.run_context(run))
                keep = paired[paired["question"].isin(QUESTIONS) & paired["metric"].isin(METRICS)]
                keep = keep[keep["level"] == "track"]
                rows += keep.assign(effect=effect, replication=rep).to_dict(orient="records")
                manifest = pd.read_csv(root / "demo_manifest.csv")
                recovery.setdefault(effect, []).append(attention_recovery(run, manifest))
                acc = keep[keep["metric"] == "accuracy"][["comparison", "difference", "ci_low", "ci_high"]]
                print(f"{effect} #{rep} ({time.perf_counter() - t0:.0f} s)\n{acc.round(1).to_string(index=False)}")
    table = pd.DataFrame(rows)
    summary = summarise(table)
    print(pd.DataFrame(summary).round(2).to_string(index=False))
    recovered = summarise_recovery(recovery)
    print(pd.DataFrame(recovered).round(3).to_string(index=False))
    result = {
        "command": "python benchmarks/planted.py " + " ".join(argv or sys.argv[1:]),
        "settings": vars(args),
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "attention_recovery_summary": recovered,
        "attention_recovery": recovery,
        "rows": table.to_dict(orient="records"),
    }
    out = write_json(args.out, result, default=lambda v: None if pd.isna(v) else str(v))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
