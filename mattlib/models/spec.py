"""The torch model a study cell trains, as one validated object: :class:`ModelSpec`.

Its defaults are the study's (:class:`mattlib.study.settings.Settings` takes them from here);
the encoders and poolings underneath take required arguments. Torch-free until :meth:`build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mattlib.errors import MattError
from mattlib.models import encoders, mil

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mattlib.models.mil.bag_model import BagModel

__all__ = ["BASELINES", "LATE", "MATT_SCORES", "ModelError", "ModelSpec", "poolings_with_late"]

#: The classic baselines (:func:`mattlib.models.baselines.make_baseline`), on a feature set.
BASELINES = ("lr", "knn", "svm", "sklearn_mlp")

#: Not a trained pooling: the late fusion of the track-level (``none``) model.
LATE = "late"
#: MATT's instance scores (:class:`mattlib.models.mil.MATTPooling`).
MATT_SCORES = ("paper", "dot")


class ModelError(MattError, ValueError):
    """A model specification names an unknown encoder, pooling or score."""


@dataclass(frozen=True)
class ModelSpec:
    """An instance encoder and a bag pooling (OpenNRE's encoder / bag-model split).

    Parameters
    ----------
    encoder : str, default 'mlp'
        A key of :data:`mattlib.models.encoders.ENCODERS`: ``mlp`` reads a feature set,
        ``crnn`` / ``crnn_tf`` the log-mel.
    pooling : str, default 'mean'
        A key of :data:`mattlib.models.mil.POOLINGS`, or ``late``: the track-level (``none``)
        model whose track probabilities are averaged over each test bag.
    hidden : tuple of int, default (512, 256)
        The MLP encoder's layer widths.
    widths : tuple of int, default (64, 128, 128, 128)
        The CRNN / CRNN-TF convolution widths.
    matt_score : {'paper', 'dot'}, default 'paper'
        MATT's instance score (:class:`mattlib.models.mil.MATTPooling`).

    Examples
    --------
    >>> spec = ModelSpec(encoder="mlp", pooling="late")
    >>> spec.track_level, spec.trained_pooling
    (True, 'none')
    >>> ModelSpec(pooling="sum")
    Traceback (most recent call last):
    ...
    mattlib.models.spec.ModelError: unknown pooling 'sum'; valid: none, late, mean, max, matt, gated
    """

    encoder: str = "mlp"
    pooling: str = "mean"
    hidden: tuple[int, ...] = (512, 256)
    widths: tuple[int, ...] = (64, 128, 128, 128)
    matt_score: str = "paper"

    def __post_init__(self) -> None:
        poolings = poolings_with_late()
        for what, value, valid in (
            ("encoder", self.encoder, tuple(encoders.ENCODERS)),
            ("pooling", self.pooling, poolings),
            ("matt_score", self.matt_score, MATT_SCORES),
        ):
            if value not in valid:
                raise ModelError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    @property
    def track_level(self) -> bool:
        """Trained on single tracks (bags of one): ``none`` and its late-fusion control."""
        return self.pooling in ("none", LATE)

    @property
    def trained_pooling(self) -> str:
        """The pooling that is trained (``late`` fuses the ``none`` model's predictions)."""
        return "none" if self.pooling == LATE else self.pooling

    @property
    def reads_mel(self) -> bool:
        """The encoder reads the log-mel (every encoder but the MLP)."""
        return self.encoder != "mlp"

    def encoder_options(self) -> dict:
        """The widths the encoder takes (``hidden`` for mlp, ``widths`` for the CRNNs)."""
        if self.encoder == "mlp":
            return {"hidden": self.hidden}
        if self.encoder in ("crnn", "crnn_tf"):
            return {"widths": self.widths}
        return {}  # a registered encoder brings its own defaults

    def build(self, *, input_shape: Sequence[int], n_classes: int) -> BagModel:
        """The :class:`mattlib.models.mil.BagModel` (fresh weights from torch's current seed)."""
        encoder = encoders.make_encoder(self.encoder, input_shape=input_shape, **self.encoder_options())
        options = {"score": self.matt_score} if self.trained_pooling == "matt" else {}
        pooling = mil.make_pooling(self.trained_pooling, in_dim=encoder.out_dim, n_classes=n_classes, **options)
        return mil.BagModel(encoder, pooling)


def poolings_with_late() -> tuple[str, ...]:
    """The registry's poolings with ``late`` after ``none`` (none, late, mean, ...)."""
    names = [name for name in mil.POOLINGS if name != LATE]
    at = names.index("none") + 1 if "none" in names else 0
    return (*names[:at], LATE, *names[at:])
