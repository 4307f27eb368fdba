"""Stage 4, training: bags as torch data, the trainer (validation-only selection, checkpoints,
resume) and prediction.

=================  ==========================================================================
module             what
=================  ==========================================================================
:mod:`.config`     :class:`FitConfig`, the training settings (torch-free)
:mod:`.bags`       :class:`BagDataset`, :class:`BagBatch`, :func:`collate_bags`
:mod:`.trainer`    :class:`Trainer`, :func:`fit`, :class:`FitResult`
:mod:`.checkpoints` ``best.pt`` / ``last.pt``, :func:`load_checkpoint`
:mod:`.predict`    :func:`predict`, :class:`Predictions`
:mod:`.runtime`    device, seeding, autocast
=================  ==========================================================================

This ``__init__`` imports no torch: ``from mattlib.training import FitConfig`` is what the
settings read; the rest loads on first use.
"""

from __future__ import annotations

from mattlib.registry import lazy_exports
from mattlib.training.config import FitConfig, TrainingError

__all__ = [
    "BagBatch",
    "BagDataset",
    "FitConfig",
    "FitResult",
    "Predictions",
    "Trainer",
    "TrainingError",
    "collate_bags",
    "fit",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "seed_everything",
]

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "BagBatch": "mattlib.training.bags:BagBatch",
        "BagDataset": "mattlib.training.bags:BagDataset",
        "collate_bags": "mattlib.training.bags:collate_bags",
        "FitResult": "mattlib.training.trainer:FitResult",
        "Trainer": "mattlib.training.trainer:Trainer",
        "fit": "mattlib.training.trainer:fit",
        "load_checkpoint": "mattlib.training.checkpoints:load_checkpoint",
        "Predictions": "mattlib.training.predict:Predictions",
        "predict": "mattlib.training.predict:predict",
        "resolve_device": "mattlib.training.runtime:resolve_device",
        "seed_everything": "mattlib.training.runtime:seed_everything",
    },
)
