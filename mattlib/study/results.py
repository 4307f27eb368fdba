"""What one cell reports: :class:`ModelResult` (one model's test metrics) and
:class:`ExperimentResult` (the cell's models, written as ``metrics.json``, ``predictions.csv``,
``test_scores.csv``, ``history.csv`` and ``attention.json``), and their display names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mattlib.data import bags as bagging
from mattlib.evaluation import metrics
from mattlib.evaluation.resampling import resampling_units
from mattlib.evaluation.results import TEST_SCORES_FILE, write_json, write_metrics
from mattlib.study import choices

if TYPE_CHECKING:
    from mattlib.study.data import StudyData

__all__ = ["ExperimentResult", "ModelResult", "late_fusion_result", "model_label", "score"]

_LABELS = {
    "lr": "LR",
    "knn": "KNN",
    "svm": "SVM",
    "sklearn_mlp": "MLP (sklearn)",
    "mlp": "MLP",
    "crnn": "CRNN",
    "crnn_tf": "CRNN-TF",
}
_POOL_SUFFIX = {"none": "", "late": "+late", "mean": "+MIL", "max": "+MIL-max", "matt": "+MATT", "gated": "+gated"}


def model_label(model: str, pooling: str, *, matt_score: str = "paper") -> str:
    """Display name: "SVM", "MLP+MIL", "CRNN-TF+MATT", "SVM+late", "MLP+MATT (bilinear)".

    The torch MLP encoder on single tracks is "MLP (torch)" ("MLP (torch)+late" fused), the
    control of MLP+MIL / MLP+MATT; FMA's scikit-learn baseline (``sklearn_mlp``) is "MLP (sklearn)". A pooling or
    encoder registered without a label here is shown by its name ("MLP+sum", "RESNET").

    Examples
    --------
    >>> model_label("crnn_tf", "matt"), model_label("svm", "late"), model_label("mlp", "none")
    ('CRNN-TF+MATT', 'SVM+late', 'MLP (torch)')
    """
    models, poolings = choices.MODELS, choices.POOLINGS
    if model not in models:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(models)}")
    if pooling not in poolings:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(poolings)}")
    if matt_score not in ("paper", "dot"):
        raise ValueError(f"unknown matt_score {matt_score!r}; valid: paper, dot")
    base = _LABELS.get(model, model.upper())  # a registered encoder without a label: its name
    if model == "mlp" and pooling in ("none", "late"):
        base = "MLP (torch)"
    suffix = _POOL_SUFFIX.get(pooling, f"+{pooling}")
    suffix += " (bilinear)" if pooling == "matt" and matt_score == "dot" else ""
    return base + suffix


@dataclass
class ModelResult:
    """One reported model: its label, how it was evaluated, and the metrics."""

    label: str
    model: str
    pooling: str
    # "bags": the model's own test predictions (album bags, or tracks for a track-level model);
    # "case study: ...": the case study's evaluations, kept out of Tables I and II
    evaluation: str
    metrics: dict
    bag_ids: list[str]
    scores: np.ndarray

    def entry(self, *, feature_set: str, seed: int) -> dict:
        summary = {k: v for k, v in self.metrics.items() if k != "pr_curve"}
        summary["accuracy"] = self.metrics["track_accuracy"]
        return {
            "label": self.label,
            "feature_set": feature_set,
            "model": self.model,
            "pooling": self.pooling,
            "seed": seed,
            "evaluation": self.evaluation,
            "summary": summary,
            "pr_curve": self.metrics.get("pr_curve"),
        }


@dataclass
class ExperimentResult:
    """The outcome of one notebook cell: one or more reported models plus training details."""

    feature_set: str
    seed: int
    params: dict
    results: list[ModelResult]
    membership: pd.DataFrame
    classes: list[str]
    history: list[dict] = field(default_factory=list)
    attention: list[dict] | None = None
    extra: dict = field(default_factory=dict)
    network: Any = field(default=None, repr=False)  # the trained torch model, if any

    @property
    def main(self) -> ModelResult:
        return self.results[0]

    def table(self) -> pd.DataFrame:
        """Headline metrics (%) of every reported model, one row each."""
        rows = []
        for r in self.results:
            m = r.metrics
            rows.append(
                {
                    "model": r.label,
                    "evaluation": r.evaluation,
                    "track accuracy": 100 * m["track_accuracy"],
                    "bag accuracy": 100 * m["bag_accuracy"],
                    "macro-F1": 100 * (m["macro_f1"] or 0),
                    "balanced accuracy": 100 * (m["balanced_accuracy"] or 0),
                    "AP (micro)": m["average_precision"],
                    **{
                        f"Top@{k} <100": None
                        if m["top_k"]["<100"].get(str(k)) is None
                        else 100 * m["top_k"]["<100"][str(k)]
                        for k in (2, 3, 5)
                    },
                }
            )
        return pd.DataFrame(rows).set_index("model").round(2)

    def predictions_frame(self) -> pd.DataFrame:
        """Per test track: genre, bag, album (bootstrap unit), and for each reported model the
        predicted genre (``pred <label>``)."""
        test = self.membership[self.membership["split"] == "test"]
        frame = test[["track_id", "bag_id", "genre", "bag_genre"]].copy()
        frame["album"] = resampling_units(test)  # the unit of paired bootstraps
        for r in self.results:
            scores = pd.DataFrame(r.scores, index=r.bag_ids, columns=self.classes)
            # album-bag scores are looked up by bag, bags-of-one scores by track
            key = frame["bag_id"]
            if not key.isin(scores.index).all():
                key = bagging.singleton_ids(frame["track_id"])
            frame[f"pred {r.label}"] = scores.loc[key].idxmax(axis=1).to_numpy()
        return frame

    def test_scores_frame(self) -> pd.DataFrame:
        """Per reported model and test track: the scores the model gave the track (a bag model's
        bag scores, given to each of its tracks), with the track's genre, bag and album.

        One row per (model, track); the columns after ``album`` are the genres. The report's
        paired tests and intervals are computed from this table (``test_scores.csv``).
        """
        test = self.membership[self.membership["split"] == "test"]
        base = test[["track_id", "bag_id", "genre", "bag_genre"]].reset_index(drop=True)
        base["album"] = resampling_units(test)
        parts = []
        for r in self.results:
            scores = pd.DataFrame(r.scores, index=r.bag_ids, columns=self.classes)
            key = base["bag_id"]
            if not key.isin(scores.index).all():
                key = bagging.singleton_ids(base["track_id"])
            part = base.assign(label=r.label, evaluation=r.evaluation, seed=self.seed)
            parts.append(pd.concat([part, scores.loc[key].reset_index(drop=True)], axis=1))
        return pd.concat(parts, ignore_index=True)

    def save(self, output_dir: str | Path, *, notebook: str = "") -> Path:
        """Write ``metrics.json``, ``predictions.csv``, ``test_scores.csv``, ``history.csv`` and
        ``attention.json``."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        entries = [r.entry(feature_set=self.feature_set, seed=self.seed) for r in self.results]
        self.predictions_frame().to_csv(output_dir / "predictions.csv", index=False)
        self.test_scores_frame().to_csv(output_dir / TEST_SCORES_FILE, index=False, float_format="%.6g")
        if self.history:
            pd.DataFrame(self.history).to_csv(output_dir / "history.csv", index=False)
        if self.attention is not None:
            write_json(
                output_dir / "attention.json",
                {"classes": self.classes, "model": self.main.label, "bags": self.attention},
            )
        return write_metrics(
            output_dir,
            {
                "notebook": notebook,
                "feature_set": self.feature_set,
                "seed": self.seed,
                "params": self.params,
                "results": entries,
                "train_counts": self.train_counts_dict(),
                "train_bag_counts": self.train_bag_counts_dict(),
                **({"leakage": found} if (found := bagging.leakage(self.membership)) else {}),
                **self.extra,
            },
        )

    def train_bag_counts_dict(self) -> dict:
        """Training bags per genre (bag training weighs each bag once)."""
        training = self.membership[self.membership["split"] == "training"]
        bags = training.groupby("bag_id", sort=False)["bag_genre"].first().value_counts()
        return {c: int(bags.get(c, 0)) for c in self.classes}

    def train_counts_dict(self) -> dict:
        return bagging.train_counts(self.membership, classes=self.classes).to_dict()


def score(
    data: StudyData,
    *,
    bag_ids,
    scores,
    membership: pd.DataFrame,
    seed: int,
    label: str,
    model: str,
    pooling: str,
    evaluation: str = "bags",
) -> ModelResult:
    """A reported model: ``scores`` (n_bags, C) of ``bag_ids`` evaluated on ``membership``."""
    lt100, lt200, head_min = data.tail_thresholds
    bag_ids = list(bag_ids)
    scores = np.asarray(scores)
    evaluated = metrics.evaluate(
        bag_ids=bag_ids,
        scores=scores,
        membership=membership,
        classes=data.classes,
        train_counts=data.train_counts.to_dict(),
        tail_thresholds={"<100": lt100, "<200": lt200},
        head_min=head_min,
        tail_max=lt200,
        seed=seed,
        n_boot=1000,
        include_pr_curve=True,
    )
    return ModelResult(
        label=label,
        model=model,
        pooling=pooling,
        evaluation=evaluation,
        metrics=evaluated,
        bag_ids=bag_ids,
        scores=scores,
    )


def late_fusion_result(
    data: StudyData, *, track_scores: pd.DataFrame, model: str, label: str, seed: int
) -> ModelResult:
    """The late-fusion control: ``track_scores`` (test tracks x genres) averaged over each test
    album bag (:func:`mattlib.models.fusion.late_fusion`), scored as a bag model."""
    from mattlib.models.fusion import late_fusion

    test = data.split("test")
    bag_scores = late_fusion(track_scores, test, classes=data.classes)
    return score(
        data,
        bag_ids=bag_scores.index,
        scores=bag_scores.to_numpy(),
        membership=test,
        seed=seed,
        label=label,
        model=model,
        pooling="late",
    )
