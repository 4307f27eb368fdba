"""The instance-level model (``none``): the track-level control of every bag pooling."""

from __future__ import annotations

from mattlib.models.mil.mean import MeanPooling

__all__ = ["InstancePooling"]


class InstancePooling(MeanPooling):
    """Instance-level model (``none``): classify every instance, average the logits over the bag.

    ``logits = (1/n) sum_k (W s_k + b) = W ((1/n) sum_k s_k) + b``: with a linear classifier the
    mean of the instance logits *is* the logits of the mean embedding, so this is
    :class:`MeanPooling` under its track-level name; for a bag of one track it is a plain
    track-level classifier. ``attention`` is uniform ``1/n`` over real instances.
    """
