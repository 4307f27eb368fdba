"""The three kinds of run, each from :class:`~mattlib.study.settings.Settings`: a scikit-learn
baseline (:func:`run_baseline`), a torch encoder + bag pooling (:func:`run_bag_model`) and the
paper's case study (:func:`run_case_study`); :func:`train` picks the one ``settings`` names."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mattlib.data import bags as bagging
from mattlib.study import choices
from mattlib.study.attention import attention_records
from mattlib.study.results import ExperimentResult, ModelResult, late_fusion_result, model_label, score

if TYPE_CHECKING:
    from mattlib.study.data import StudyData
    from mattlib.study.settings import Settings

__all__ = ["run_bag_model", "run_baseline", "run_case_study", "train"]

#: The settings a torch run records in ``metrics.json``'s ``params`` (besides model and pooling).
_RECORDED = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "patience",
    "hidden",
    "widths",
    "max_bag_size",
    "matt_score",
    "class_weights",
    "logit_adjustment",
    "track_weighting",
)


def train(data: StudyData, settings: Settings, *, case_study: bool = False) -> ExperimentResult:
    """Fit and evaluate the model ``settings`` names: a scikit-learn baseline (:func:`run_baseline`)
    for lr / knn / svm / sklearn_mlp, the torch encoder for mlp / crnn / crnn_tf with any pooling
    (:func:`run_bag_model`; checkpoints under ``<output_dir>/checkpoints``); ``case_study`` runs
    :func:`run_case_study` instead.

    ``model: mlp`` is the torch MLP encoder (04 / 05 / 07); ``sklearn_mlp`` is FMA's scikit-learn
    MLP baseline (03).
    """
    checkpoints = Path(settings.output_dir) / "checkpoints"
    if case_study:
        return run_case_study(data, settings, checkpoint_dir=checkpoints)
    if settings.model in choices.BASELINES:
        if settings.pooling not in ("none", choices.LATE):
            raise ValueError(
                f"model {settings.model} is a scikit-learn baseline and takes no bag pooling "
                f"({settings.pooling!r}): set pooling none (its late fusion is reported beside it) or "
                f"choose an encoder ({', '.join(choices.ENCODERS)})"
            )
        return run_baseline(data, settings)
    return run_bag_model(data, settings, checkpoint_dir=checkpoints)


def run_baseline(data: StudyData, settings: Settings, **options) -> ExperimentResult:
    """Fit the scikit-learn baseline ``settings.model`` (LR, kNN, SVM, scikit-learn's MLP; scaled) on training
    tracks; ``options`` go to :func:`mattlib.models.baselines.make_baseline`.

    Reported: the track-level model on test tracks, and its late-fusion control (track
    probabilities averaged over each test album bag, no bag training).
    """
    from mattlib.models import baselines

    model, seed = settings.model, settings.seed
    if model not in choices.BASELINES:
        raise ValueError(f"unknown baseline {model!r}; valid: {', '.join(choices.BASELINES)}")
    if not isinstance(data.instances, pd.DataFrame):
        raise ValueError("classic baselines need a feature set (not 'mel')")
    train_rows, test = data.split("training"), data.split("test")
    index = {c: i for i, c in enumerate(data.classes)}
    pipeline = baselines.make_baseline(model, seed=seed, **options)
    start = time.perf_counter()
    pipeline.fit(data.matrix(train_rows["track_id"]), train_rows["genre"].map(index).to_numpy())
    fit_seconds = time.perf_counter() - start
    probs = np.zeros((len(test), len(data.classes)))
    probs[:, pipeline.classes_] = pipeline.predict_proba(data.matrix(test["track_id"]))
    track_scores = pd.DataFrame(probs, index=test["track_id"].to_numpy(), columns=data.classes)
    single = bagging.singletons(test)
    track = score(
        data,
        bag_ids=single["bag_id"],
        scores=track_scores.loc[single["track_id"].to_numpy()].to_numpy(),
        membership=single,
        seed=seed,
        label=model_label(model, "none"),
        model=model,
        pooling="none",
    )
    late = late_fusion_result(data, track_scores=track_scores, model=model, label=model_label(model, "late"), seed=seed)
    return ExperimentResult(
        feature_set=data.feature_set,
        seed=seed,
        params={"model": model, **options},
        results=[track, late],
        membership=data.membership,
        classes=data.classes,
        extra={"fit_seconds": fit_seconds},
    )


def run_bag_model(
    data: StudyData, settings: Settings, *, progress: bool = True, checkpoint_dir: str | Path | None = None
) -> ExperimentResult:
    """Train the torch encoder ``settings.model`` with bag pooling ``settings.pooling``
    (:attr:`Settings.model_spec`, trained with :attr:`Settings.fit`) and evaluate it on the test split.

    ``pooling`` "none" / "late" train on single tracks (bags of one) and report the track-level
    model and its late-fusion control; the others train on album–artist bags. For a track-level
    model, ``track_weighting="bag"`` weighs each track 1 / its training bag's size, so that every
    album weighs as much as in bag training (reported as "<track model> (1/bag)").

    Selection: the best epoch on the **validation** split (never the test split), by track
    accuracy on validation bags built like the test's; a track-level model's late-fusion control
    by the late-fused track accuracy on the validation album bags (the bag models' criterion).
    ``class_weights`` and ``logit_adjustment`` take their prior from the training tracks per
    genre, for bag and track models alike. Bags are never truncated: training bags are chunked
    when ``data.max_bag_size`` is set, and validation / test bags are predicted from all of their
    tracks. ``checkpoint_dir`` holds ``best.pt`` and, while training, ``last.pt``: a killed run
    resumes from its last finished epoch when the cell runs again.
    """
    import torch

    from mattlib import training

    spec = settings.model_spec
    if spec.reads_mel != (data.feature_set == "mel"):
        raise ValueError(
            f"model {spec.encoder!r} does not read feature set {data.feature_set!r}: "
            "mlp reads a feature set, crnn / crnn_tf read 'mel'"
        )
    torch.manual_seed(settings.seed)
    net = spec.build(input_shape=data.instance_shape, n_classes=len(data.classes))
    chunk = None if spec.track_level else data.max_bag_size or None  # bags of one need no chunks
    fitted = training.fit(
        net,
        _dataset(data, data.split("training", single=spec.track_level)),
        _dataset(data, data.split("validation", single=spec.track_level)),
        settings.fit,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        encode_chunk=chunk,
        late_val_data=_dataset(data, data.split("validation")) if spec.track_level else None,
        bag_weights=_bag_weights(data) if spec.track_level and settings.track_weighting == "bag" else None,
        class_counts=data.train_counts.to_numpy(dtype=float),
    )
    if spec.track_level:
        results, attention = _report_tracks(data, net, fitted, settings), None
    else:
        results, attention = _report_bags(data, net, settings, chunk)
    return ExperimentResult(
        feature_set=data.feature_set,
        seed=settings.seed,
        params={
            "model": spec.encoder,
            "pooling": spec.pooling,
            **{name: getattr(settings, name) for name in _RECORDED},
            "max_bag_size": data.max_bag_size,
        },
        results=results,
        membership=data.membership,
        classes=data.classes,
        history=fitted.history,
        attention=attention,
        extra={
            "best_epoch": fitted.best_epoch,
            "best_val_accuracy": fitted.best_val_accuracy,
            "late_epoch": fitted.late_epoch,
            "late_val_accuracy": fitted.late_val_accuracy,
            "device": fitted.device,
            "stopped_early": fitted.stopped_early,
        },
        network=net,
    )


def _report_tracks(data: StudyData, net, fitted, settings: Settings) -> list[ModelResult]:
    """A track-level model on test tracks, and its late fusion over test albums (from the epoch
    selected on late-fused validation accuracy); ``pooling: late`` reports the fusion first."""
    from mattlib import training

    model, single = settings.model, data.split("test", single=True)
    label = model_label(model, "none") + (" (1/bag)" if settings.track_weighting == "bag" else "")
    preds = training.predict(net, _dataset(data, single), device=settings.device)
    net.load_state_dict(fitted.late_state)
    late_preds = training.predict(net, _dataset(data, single), device=settings.device)
    net.load_state_dict(fitted.best_state)
    track_ids = single.set_index("bag_id").loc[late_preds.bag_ids, "track_id"].to_numpy()
    results = [
        _scored(data, preds, single, settings, label=label, pooling="none"),
        late_fusion_result(
            data,
            track_scores=pd.DataFrame(late_preds.scores, index=track_ids, columns=data.classes),
            model=model,
            label=label + "+late",
            seed=settings.seed,
        ),
    ]
    return results[::-1] if settings.pooling == choices.LATE else results


def _report_bags(data: StudyData, net, settings: Settings, chunk: int | None) -> tuple[list[ModelResult], list]:
    """A bag model on the test album bags, with every query's attention per bag."""
    from mattlib import training

    test = data.split("test")
    preds = training.predict(net, _dataset(data, test), device=settings.device, all_attention=True, encode_chunk=chunk)
    label = model_label(settings.model, settings.pooling, matt_score=settings.matt_score)
    return [_scored(data, preds, test, settings, label=label)], attention_records(preds, test, data.classes)


def _scored(data: StudyData, preds, membership: pd.DataFrame, settings: Settings, *, label: str, **kw) -> ModelResult:
    """:func:`~mattlib.study.results.score` of a torch model's predictions."""
    options = {"pooling": settings.pooling, "evaluation": "bags", **kw}
    return score(
        data,
        bag_ids=preds.bag_ids,
        scores=preds.scores,
        membership=membership,
        seed=settings.seed,
        label=label,
        model=settings.model,
        **options,
    )


def _bag_weights(data: StudyData) -> dict[str, float]:
    """1 / training bag size per single-track bag id (every album weighs as in bag training)."""
    album_rows = data.split("training")
    size = album_rows.groupby("bag_id")["track_id"].transform("size").to_numpy()
    return dict(zip(bagging.singleton_ids(album_rows["track_id"], "training"), 1.0 / size))


def _dataset(data: StudyData, rows: pd.DataFrame):
    from mattlib.training import BagDataset

    if isinstance(data.instances, pd.DataFrame):
        return BagDataset(rows, data.instances, data.classes)
    return BagDataset(rows, data.instances, data.classes, track_index=data.track_index)


def run_case_study(
    data: StudyData, settings: Settings, *, checkpoint_dir: str | Path | None = None
) -> ExperimentResult:
    """The paper's case study: a model trained on bags, tested on bags and on single tracks,
    beside the same encoder trained and tested on single tracks.

    The paper (MLP, all features): 68.83 % on bags → 63.69 % on single segments; trained on
    segments: 58 %.
    """
    from mattlib import training

    model, pooling = settings.model, settings.pooling
    bag_run = run_bag_model(
        data, settings, progress=False, checkpoint_dir=checkpoint_dir and Path(checkpoint_dir) / "bags"
    )
    single = data.split("test", single=True)
    preds = training.predict(bag_run.network, _dataset(data, single), device=settings.device)
    on_single = _scored(
        data,
        preds,
        single,
        settings,
        label=model_label(model, pooling) + " on single tracks",
        evaluation="case study: single",
    )
    track_run = run_bag_model(
        data,
        settings.replace(pooling="none"),
        progress=False,
        checkpoint_dir=checkpoint_dir and Path(checkpoint_dir) / "single",
    )
    trained_single = track_run.results[0]
    trained_single.evaluation = "case study: trained on single"
    trained_single.label = model_label(model, "none") + " trained on single tracks"
    bag_result = bag_run.main
    bag_result.evaluation = "case study: bags"  # kept out of Table I / II (03-05 report those)
    summary = {
        "model": bag_result.label,
        "trained on bags, tested on bags (%)": 100 * bag_result.metrics["track_accuracy"],
        "trained on bags, tested on single tracks (%)": 100 * on_single.metrics["track_accuracy"],
        "trained on single tracks (%)": 100 * trained_single.metrics["track_accuracy"],
        "paper: bags → single (%)": "68.83 → 63.69",
        "paper: trained on segments (%)": 58.0,
    }
    return ExperimentResult(
        feature_set=data.feature_set,
        seed=settings.seed,
        params={"model": model, "pooling": pooling, **_case_params(settings)},
        results=[bag_result, on_single, trained_single],
        membership=data.membership,
        classes=data.classes,
        history=bag_run.history,
        attention=bag_run.attention,
        extra={"case_study": summary},
    )


def _case_params(settings: Settings) -> dict:
    """The training settings the case study records (as it always has: ``device`` included)."""
    names = [n for n in _RECORDED if n != "max_bag_size"]
    names.insert(names.index("patience"), "device")
    return {name: getattr(settings, name) for name in names}
