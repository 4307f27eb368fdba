"""The study's named choices, importable without torch or librosa (the grid runner validates
params files with them before anything runs).

Poolings and encoders are read from their registries (:data:`mattlib.models.mil.POOLINGS`,
:data:`mattlib.models.encoders.ENCODERS`, torch-free dicts of ``"module:class"``) every time
``choices.POOLINGS`` / ``choices.ENCODERS`` / ``choices.MODELS`` is read, so a pooling registered
there is valid everywhere; :func:`feature_kinds` reads :data:`mattlib.features.kinds.KINDS`
the same way. Feature sets and baselines are read from their owners (:mod:`mattlib.features.sets`,
:mod:`mattlib.models.spec`), never listed twice.
"""

from __future__ import annotations

from typing import Any

from mattlib.features.sets import FEATURE_SETS as _FEATURE_GROUPS
from mattlib.models.spec import BASELINES as _BASELINES
from mattlib.models.spec import LATE as _LATE
from mattlib.models.spec import poolings_with_late

# POOLINGS, ENCODERS and MODELS are module attributes read live (see __getattr__), not in __all__
__all__ = ["BASELINES", "FEATURE_SETS", "LATE", "encoders", "feature_kinds", "models", "poolings"]

#: Table I's feature sets (:data:`mattlib.features.FEATURE_SETS`, FMA's 518 statistics grouped),
#: then the log-mel and the musicnn embeddings (the mean over a track's 3 s patches).
FEATURE_SETS = (*_FEATURE_GROUPS, "mel", "musicnn")
#: Classic baselines (scikit-learn, on a feature set): :data:`mattlib.models.spec.BASELINES`.
BASELINES = _BASELINES
#: Not a trained pooling: late fusion of the ``none`` (track-level) model, listed after ``none``.
LATE = _LATE
#: Bag poolings: the registry's names with ``late`` after ``none`` (none, late, mean, ...).
poolings = poolings_with_late


def datasets() -> tuple[str, ...]:
    """What ``dataset`` accepts: ``auto`` (detected from the root), then the registry's datasets."""
    from mattlib.data.datasets import DATASETS

    return ("auto", *DATASETS)


def feature_kinds() -> tuple[str, ...]:
    """What ``kind`` (feature extraction) accepts: the registry's kinds, then ``both`` (all of them)."""
    from mattlib.features.kinds import KINDS

    return (*KINDS, "both")


def encoders() -> tuple[str, ...]:
    """Track encoders (torch): mlp on a feature set, crnn / crnn_tf on the log-mel, ..."""
    from mattlib.models.encoders import ENCODERS as registry

    return tuple(registry)


def models() -> tuple[str, ...]:
    """Every model name a notebook accepts: the baselines, then the encoders not among them."""
    return (*BASELINES, *(name for name in encoders() if name not in BASELINES))


_LIVE = {"POOLINGS": poolings, "ENCODERS": encoders, "MODELS": models}


def __getattr__(name: str) -> Any:
    # PEP 562: choices.POOLINGS etc. are read from the registries at each access (never frozen)
    if name in _LIVE:
        return _LIVE[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
