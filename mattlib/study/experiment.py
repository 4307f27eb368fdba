"""One experiment of the study in a few calls: data, model, evaluation, results on disk.

The notebooks (03 baselines, 04 MIL, 05 MATT, 07 case study) are thin wrappers around::

    settings = Settings.for_notebook(globals())   # mattlib.study.settings: every setting, validated
    data = experiment.load(settings)              # bags, classes and instances of one feature set
    result = experiment.train(data, settings)     # a baseline, a bag model or the case study
    result.save(settings.output_dir)

Scripts call the same functions with a :class:`~mattlib.study.settings.Settings` of their own
(``experiment.run_bag_model(data, Settings(model="mlp", pooling="matt"))``). This module is the
study layer's one import; the work is in :mod:`.data` (:func:`load`, :class:`StudyData`),
:mod:`.runs` (the three kinds of run), :mod:`.results` (what a cell reports and writes:
``metrics.json``, ``predictions.csv``, ``test_scores.csv``, ``attention.json``) and
:mod:`.attention` (the explorer's records and log-mels). The tail sets are
:mod:`mattlib.evaluation.tails`'.
"""

from __future__ import annotations

from mattlib.data.fma import FMA_MEDIUM_TRAIN_COUNTS, FMA_MEDIUM_TRAIN_TRACKS
from mattlib.evaluation.tails import study_tail_sets, tail_thresholds
from mattlib.study.attention import MelLookup, attention_records, mel_lookup, raw_scores
from mattlib.study.data import MAX_MISSING_SHARE, StudyData, load
from mattlib.study.results import ExperimentResult, ModelResult, model_label
from mattlib.study.runs import run_bag_model, run_baseline, run_case_study, train

__all__ = [
    "FMA_MEDIUM_TRAIN_COUNTS",
    "FMA_MEDIUM_TRAIN_TRACKS",
    "MAX_MISSING_SHARE",
    "ExperimentResult",
    "MelLookup",
    "ModelResult",
    "StudyData",
    "attention_records",
    "load",
    "mel_lookup",
    "model_label",
    "raw_scores",
    "run_bag_model",
    "run_baseline",
    "run_case_study",
    "study_tail_sets",
    "tail_thresholds",
    "train",
]
