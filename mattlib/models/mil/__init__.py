"""Bag pooling: padded bags of instance embeddings -> genre logits (+ attention).

One module per pooling, one interface for all (torchmil style, see :mod:`.base`)::

    logits, attention = pooling(instances, mask, labels=None)

:data:`POOLINGS` names them: ``none`` (instance level, :mod:`.instance`), ``mean`` and ``max``
(the paper's "MIL" rows, :mod:`.mean`, :mod:`.maximum`), ``matt`` (the paper's eqs. 1-5,
:mod:`.matt`) and ``gated`` (Ilse et al. 2018, beyond the paper, :mod:`.gated`).
:class:`BagModel` (:mod:`.bag_model`) joins an encoder (:mod:`mattlib.models.encoders`) and a
pooling; the bag-free control, :func:`late_fusion`, lives in the torch-free
:mod:`mattlib.models.fusion`.

This package's ``__init__`` imports neither torch nor a pooling: the registry is read by the
params-file validator (:mod:`mattlib.study.settings`); the classes load on first use
(``from mattlib.models.mil import MATTPooling`` works as before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mattlib.registry import lazy_exports, lookup

if TYPE_CHECKING:
    from mattlib.models.mil.base import BagPooling

__all__ = [
    "POOLINGS",
    "BagModel",
    "BagPooling",
    "GatedAttentionPooling",
    "InstancePooling",
    "MATTPooling",
    "MaxPooling",
    "MeanPooling",
    "late_fusion",
    "make_pooling",
    "masked_softmax",
]

#: Pooling name -> ``"module:class"`` (a :class:`~mattlib.models.mil.base.BagPooling`). The order
#: is the one settings and menus list (with ``late`` after ``none``, see :mod:`mattlib.study.choices`).
POOLINGS: dict[str, str] = {
    "none": "mattlib.models.mil.instance:InstancePooling",
    "mean": "mattlib.models.mil.mean:MeanPooling",
    "max": "mattlib.models.mil.maximum:MaxPooling",
    "matt": "mattlib.models.mil.matt:MATTPooling",
    "gated": "mattlib.models.mil.gated:GatedAttentionPooling",
}

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "BagModel": "mattlib.models.mil.bag_model:BagModel",
        "BagPooling": "mattlib.models.mil.base:BagPooling",
        "GatedAttentionPooling": "mattlib.models.mil.gated:GatedAttentionPooling",
        "InstancePooling": "mattlib.models.mil.instance:InstancePooling",
        "MATTPooling": "mattlib.models.mil.matt:MATTPooling",
        "MaxPooling": "mattlib.models.mil.maximum:MaxPooling",
        "MeanPooling": "mattlib.models.mil.mean:MeanPooling",
        "late_fusion": "mattlib.models.fusion:late_fusion",
        "masked_softmax": "mattlib.models.mil.base:masked_softmax",
    },
)


def make_pooling(name: str, *, in_dim: int, n_classes: int, **kwargs) -> BagPooling:
    """Build a bag pooling by name.

    Parameters
    ----------
    name : str
        A key of :data:`POOLINGS` (``none``, ``mean``, ``max``, ``matt``, ``gated``).
    in_dim : int
        Instance embedding size D (the encoder's ``out_dim``).
    n_classes : int
        Number of genres C.
    **kwargs
        Passed on (``dropout``; ``score`` for matt; ``attention_dim`` for gated).

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid names).
    """
    return lookup(POOLINGS, name, "pooling")(in_dim=in_dim, n_classes=n_classes, **kwargs)
