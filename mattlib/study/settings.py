"""Every setting of the study, declared once: name, type, range or choices, default.

:class:`Settings` is a frozen dataclass; its ``_parameter_constraints`` (scikit-learn style) are
checked in one place, :func:`check_setting`, by the params-file reader (:mod:`mattlib.runner`) and
by :meth:`Settings.from_parameters`. A bad value fails with one line naming the setting, the value
and what is allowed::

    >>> Settings.from_parameters({"epochs": "ten"})
    Traceback (most recent call last):
    ...
    mattlib.study.settings.SettingsError: epochs must be an integer >= 1, got 'ten' (str)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mattlib import paths
from mattlib.errors import MattError
from mattlib.executors import JOBS
from mattlib.features.mel import CROPS as MEL_CROPS
from mattlib.features.mel import MelSettings
from mattlib.features.musicnn import TAGS as MUSICNN_TAGS
from mattlib.features.musicnn import VECTORS as MUSICNN_VECTORS
from mattlib.features.musicnn import MusicnnSettings
from mattlib.models.spec import MATT_SCORES, ModelSpec
from mattlib.study import choices
from mattlib.training.config import FitConfig

__all__ = ["Interval", "ListOf", "Options", "Settings", "SettingsError", "Text", "check_setting"]


class SettingsError(MattError, ValueError):
    """A setting has a wrong type or value; the message is one line naming what is allowed."""


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (int or float) within [low, high] (None: unbounded)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if self.kind is float and not (isinstance(value, numbers.Real) and math.isfinite(value)):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        name = "an integer" if self.kind is int else "a finite number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        return " ".join([name, " and ".join(bounds)]).strip()


@dataclass(frozen=True)
class Options:
    """One of a set of values: a tuple, or a function returning one, called at every check (so
    a registry extended after import, e.g. :data:`mattlib.models.mil.POOLINGS`, is honoured)."""

    values: tuple | Callable[[], tuple]

    @property
    def choices(self) -> tuple:
        """The allowed values now."""
        return tuple(self.values()) if callable(self.values) else self.values

    def accepts(self, value: Any) -> bool:
        return any(value is v if v is None else (value == v and not isinstance(value, bool)) for v in self.choices)

    def __str__(self) -> str:
        return "one of " + ", ".join("null" if v is None else str(v) for v in self.choices)


@dataclass(frozen=True)
class ListOf:
    """A non-empty list of values that ``item`` accepts."""

    item: Interval

    def accepts(self, value: Any) -> bool:
        return isinstance(value, (list, tuple)) and len(value) > 0 and all(map(self.item.accepts, value))

    def __str__(self) -> str:
        return f"a non-empty list, each {self.item}"


@dataclass(frozen=True)
class Text:
    """A non-empty string (a path, a run name)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value.strip() != ""

    def __str__(self) -> str:
        return "a non-empty text"


@dataclass(frozen=True)
class Flag:
    """true or false (YAML's booleans; not 0 / 1)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"


_POSITIVE_INT = Interval(int, 1)
_COUNT = Interval(int, 0)
# The sub-settings own their defaults; Settings declares each as theirs (never a copy).
_FIT, _MEL, _MODEL, _MUSICNN = FitConfig(), MelSettings(), ModelSpec(), MusicnnSettings()


@dataclass(frozen=True)
class Settings:
    """The study's settings: what one notebook cell (or one CLI call) runs with.

    Parameters
    ----------
    data_root, subset, cache_dir, output_dir, run_dir
        Where the data, the feature cache and the results are (``run_dir``: the run an
        aggregating notebook reads).
    feature_set, model, pooling
        Table I's feature set, the model (a baseline or an encoder) and the bag pooling.
    seed, device
        Random seed; ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    epochs, patience, batch_size, lr, weight_decay, class_weights, logit_adjustment
        Training (``patience`` None: no early stopping): :class:`mattlib.training.FitConfig`,
        with ``seed`` and ``device`` (:attr:`fit`).
    track_weighting
        A track-level model's loss: every track alike (``track``), or 1 / its bag's size (``bag``:
        the like-for-like control of bag training's per-bag prior).
    hidden, widths
        MLP encoder widths; CRNN / CRNN-TF convolution widths (with ``model``, ``pooling`` and
        ``matt_score``: :class:`mattlib.models.spec.ModelSpec`, :attr:`model_spec`).
    max_bag_size
        0 keeps bags whole; N > 0 cuts training bags into chunks of at most N tracks (validation
        and test bags stay whole).
    allow_leakage
        Run on a split where an album or an artist spans splits (refused by default; the report
        then says so on its first page).
    matt_score
        MATT's instance score: ``paper`` (tanh(w_s [s_k; q_g] + b_s)) or ``dot`` (bilinear).
    mel_sr, mel_seconds, mel_n_mels, mel_hop_length, mel_n_fft, mel_crop
        The log-mel (:class:`mattlib.features.MelSettings`, :attr:`mel`).
    musicnn_model, musicnn_vector
        The musicnn embeddings (:class:`mattlib.features.musicnn.MusicnnSettings`): the trained
        model (``MSD_musicnn``, ``MTT_musicnn``) and the vector kept per 3 s patch (:attr:`musicnn`).

    The defaults of these groups are their sub-settings' (``FitConfig``, ``ModelSpec``,
    ``MelSettings``, ``MusicnnSettings``), written once there; the rest are the study's own.
    kind, jobs
        Which features to extract and with how many worker processes.
    """

    data_root: str = "data/demo"
    dataset: str = "auto"
    subset: str = "medium"
    cache_dir: str = "outputs/cache/demo"
    output_dir: str = "outputs/adhoc"
    run_dir: str | None = None
    feature_set: str = "all"
    model: str = _MODEL.encoder
    pooling: str = _MODEL.pooling
    seed: int = _FIT.seed
    device: str = _FIT.device
    epochs: int = _FIT.epochs
    patience: int | None = _FIT.patience
    batch_size: int = _FIT.batch_size
    lr: float = _FIT.lr
    weight_decay: float = _FIT.weight_decay
    class_weights: str | None = _FIT.class_weights
    logit_adjustment: float = _FIT.logit_adjustment
    track_weighting: str = "track"
    hidden: tuple[int, ...] = _MODEL.hidden
    widths: tuple[int, ...] = _MODEL.widths
    max_bag_size: int = 0
    allow_leakage: bool = False
    matt_score: str = _MODEL.matt_score
    mel_sr: int = _MEL.sr
    mel_seconds: float = _MEL.seconds
    mel_n_mels: int = _MEL.n_mels
    mel_hop_length: int = _MEL.hop_length
    mel_n_fft: int = _MEL.n_fft
    mel_crop: str = _MEL.crop
    musicnn_model: str = _MUSICNN.model
    musicnn_vector: str = _MUSICNN.vector
    kind: str = "both"
    jobs: int = JOBS
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "data_root": Text(),
        "dataset": Options(choices.datasets),
        "subset": Options(("small", "medium", "large")),
        "cache_dir": Text(),
        "output_dir": Text(),
        "run_dir": Options((None,)),  # or a Text; see check_setting
        "feature_set": Options(choices.FEATURE_SETS),
        "model": Options(choices.models),  # read from the registries at every check
        "pooling": Options(choices.poolings),
        "seed": _COUNT,
        "device": Options(("auto", "cpu", "cuda")),
        "epochs": _POSITIVE_INT,
        "patience": _POSITIVE_INT,  # or None
        "batch_size": _POSITIVE_INT,
        "lr": Interval(float, 0.0, low_open=True),
        "weight_decay": Interval(float, 0.0),
        "class_weights": Options((None, "balanced")),
        "logit_adjustment": Interval(float, 0.0),
        "track_weighting": Options(("track", "bag")),
        "hidden": ListOf(_POSITIVE_INT),
        "widths": ListOf(_POSITIVE_INT),
        "max_bag_size": _COUNT,
        "allow_leakage": Flag(),
        "matt_score": Options(MATT_SCORES),
        "mel_sr": _POSITIVE_INT,
        "mel_seconds": Interval(float, 0.0, low_open=True),
        "mel_n_mels": _POSITIVE_INT,
        "mel_hop_length": _POSITIVE_INT,
        "mel_n_fft": _POSITIVE_INT,
        "mel_crop": Options((*MEL_CROPS, "center")),
        "musicnn_model": Options(tuple(MUSICNN_TAGS)),
        "musicnn_vector": Options(tuple(MUSICNN_VECTORS)),
        "kind": Options(choices.feature_kinds),
        "jobs": _POSITIVE_INT,
    }
    # settings that may also be None (no limit / not set)
    _nullable: ClassVar[frozenset] = frozenset({"patience", "run_dir"})

    def __post_init__(self):
        for name in _PATH_SETTINGS:  # a pathlib.Path is a path too (kept as text: YAML- and JSON-able)
            if isinstance(getattr(self, name), os.PathLike):
                object.__setattr__(self, name, os.fspath(getattr(self, name)))
        for name in self._parameter_constraints:
            check_setting(name, getattr(self, name))
        for name in ("hidden", "widths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The declared setting names."""
        return tuple(cls._parameter_constraints)

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any], *, strict: bool = False) -> Settings:
        """Settings from a notebook's (or a params file's) parameters, validated.

        Names the study does not declare go to ``extra`` (unvalidated), or fail when ``strict``.
        """
        known = {k: v for k, v in parameters.items() if k in cls._parameter_constraints}
        unknown = {k: v for k, v in parameters.items() if k not in cls._parameter_constraints}
        if strict and unknown:
            raise SettingsError(f"unknown setting(s) {sorted(unknown)}; valid: {', '.join(cls.names())}")
        return cls(**known, extra=unknown)

    @classmethod
    def for_notebook(cls, namespace: dict[str, Any]) -> Settings:
        """Settings from a notebook's parameters cell (``Settings.for_notebook(globals())``): the
        declared names found in ``namespace``, validated, with relative paths resolved against
        the project root (:func:`mattlib.paths.resolve`), whatever folder the kernel runs in."""
        settings = cls.from_parameters({k: namespace[k] for k in cls.names() if k in namespace})
        return settings.replace(
            **{k: str(paths.resolve(getattr(settings, k))) for k in _PATH_SETTINGS if getattr(settings, k) is not None}
        )

    @property
    def fit(self) -> FitConfig:
        """The training settings, as :func:`mattlib.training.fit` takes them."""
        return FitConfig(**{name: getattr(self, name) for name in _FIT_FIELDS})

    @property
    def model_spec(self) -> ModelSpec:
        """The torch model (encoder ``model`` + ``pooling``); for an encoder, not a baseline."""
        return ModelSpec(
            encoder=self.model, pooling=self.pooling, hidden=self.hidden, widths=self.widths, matt_score=self.matt_score
        )

    @property
    def mel(self) -> MelSettings:
        """The log-mel (the ``mel_*`` settings), one object handed on to extraction and loading."""
        return MelSettings(**{field_: getattr(self, f"mel_{field_}") for field_ in _MEL_FIELDS})

    @property
    def musicnn(self) -> MusicnnSettings:
        """The musicnn embeddings (``musicnn_model``, ``musicnn_vector``)."""
        return MusicnnSettings(model=self.musicnn_model, vector=self.musicnn_vector)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML/JSON-able) values, lists for the widths; ``extra`` included."""
        out = {name: getattr(self, name) for name in self._parameter_constraints}
        out["hidden"], out["widths"] = list(self.hidden), list(self.widths)
        return {**out, **self.extra}


#: Settings that hold paths (resolved against the project root in notebooks).
_PATH_SETTINGS = ("data_root", "cache_dir", "output_dir", "run_dir")
#: FitConfig fields that are settings of the same name (``amp`` keeps its default).
_FIT_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "patience",
    "class_weights",
    "logit_adjustment",
    "seed",
    "device",
)
#: MelSettings fields, each a ``mel_<field>`` setting.
_MEL_FIELDS = ("sr", "seconds", "n_mels", "hop_length", "n_fft", "crop")


def check_setting(name: str, value: Any) -> None:
    """Raise :class:`SettingsError` (one line) if ``value`` is not allowed for setting ``name``.

    Names the study does not declare are accepted as they are.
    """
    constraint = Settings._parameter_constraints.get(name)
    if constraint is None:
        return
    if value is None and name in Settings._nullable:
        return
    if name == "run_dir":
        constraint = Text()
    if constraint.accepts(value):
        return
    hint = ""
    if isinstance(value, str) and isinstance(constraint, Interval):
        try:
            float(value)
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
        except ValueError:
            pass
    if isinstance(constraint, Options):
        return _raise(
            f"unknown {name} {value!r}; valid: {', '.join('null' if v is None else str(v) for v in constraint.choices)}"
        )
    allowed = f"{constraint} or null" if name in Settings._nullable else str(constraint)
    _raise(f"{name} must be {allowed}, got {value!r} ({type(value).__name__}){hint}")


def _raise(message: str) -> None:
    raise SettingsError(message)
