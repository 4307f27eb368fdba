"""Checkpoints of :class:`mattlib.training.Trainer`: ``best.pt`` (the selected model) and
``last.pt`` (the resume point of a killed run), both written atomically."""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mattlib.atomic import write_atomic

__all__ = ["Progress", "load_checkpoint"]


def _late_start() -> dict:
    return {"accuracy": None, "epoch": 0, "state": {}, "since": 0}


@dataclass
class Progress:
    """Where a run stands: the epochs done, the selected epoch, and the late-fusion selection.

    ``best`` is ``(validation accuracy, -validation loss)`` of the selected epoch (compared as a
    tuple: ties on accuracy go to the lower loss); ``since_best`` counts epochs without a better
    accuracy. ``late`` holds the late-fused selection (``accuracy``, ``epoch``, ``state``,
    ``since``) of an instance model.
    """

    history: list[dict] = field(default_factory=list)
    best: tuple[float, float] | None = None
    best_epoch: int = 0
    best_state: dict = field(default_factory=dict)
    since_best: int = 0
    late: dict = field(default_factory=_late_start)


def cpu_state(model: nn.Module) -> dict:
    """A detached CPU copy of ``model``'s state dict."""
    return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}


def ids_digest(data) -> str:
    """A digest of a BagDataset's bag ids and labels (which data a run was trained on)."""
    return hashlib.sha1(repr((list(data.bag_ids), list(map(int, data.labels)))).encode()).hexdigest()


def run_key(model: nn.Module, train_data, val_data, **settings) -> dict:
    """Everything that shapes a training run: the data, the model's architecture (parameter names
    and shapes), every fit setting and the mattlib code. A resume point is used only on a match."""
    from mattlib.provenance import code_digest

    weights = settings.pop("class_weights")
    return {
        "classes": list(train_data.classes),
        "n_train": len(train_data),
        "n_val": len(val_data),
        "train_bags": ids_digest(train_data),
        "val_bags": ids_digest(val_data),
        "model": type(model).__name__,
        "architecture": [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()],
        **{k: float(v) if isinstance(v, float) else v for k, v in settings.items()},
        "class_weights": weights if weights is None or isinstance(weights, str) else [float(w) for w in weights],
        "code": code_digest(),
    }


def save_best(path: str | os.PathLike, *, progress: Progress, classes: list[str]) -> None:
    """Write ``best.pt``: the selected epoch's weights and plain metadata (loads with
    ``weights_only=True``)."""
    accuracy, neg_loss = progress.best
    state = {
        "state_dict": progress.best_state,
        "epoch": progress.best_epoch,
        "val_accuracy": float(accuracy),
        "val_loss": float(-neg_loss),
        "classes": list(classes),
        "history": copy.deepcopy(progress.history),
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def save_last(path: Path, *, key: dict, model: nn.Module, opt, gen: torch.Generator, progress: Progress) -> None:
    """Write ``last.pt`` atomically (a kill mid-write never leaves a broken resume point)."""
    state = {
        "run_key": key,
        "model": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": progress.history,
        "best": list(progress.best) if progress.best is not None else None,
        "best_epoch": progress.best_epoch,
        "best_state": progress.best_state,
        "since_best": progress.since_best,
        "late": progress.late,
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def resume(path: Path, *, key: dict, model: nn.Module, opt, gen: torch.Generator) -> Progress | None:
    """Load ``last.pt`` into model, optimizer and generators if it belongs to this run."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt resume point is not worth a crash: start over
        warnings.warn(f"ignoring unreadable {path} ({err}); training from scratch", stacklevel=3)
        return None
    saved = state.get("run_key") or {}
    if saved != key:
        changed = sorted(k for k in set(saved) | set(key) if saved.get(k) != key.get(k))
        print(f"{path} was saved by another run ({', '.join(changed)} changed); training from scratch", file=sys.stderr)
        return None
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    return Progress(
        history=state["history"],
        best=tuple(state["best"]) if state["best"] is not None else None,
        best_epoch=state["best_epoch"],
        best_state=state["best_state"],
        since_best=state["since_best"],
        late=state.get("late") or _late_start(),
    )


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None) -> dict:
    """Load a ``best.pt`` with ``weights_only=True``; load it into ``model`` if given.

    Returns the checkpoint dict (``state_dict``, ``epoch``, ``val_accuracy``, ``val_loss``,
    ``classes``, ``history``).
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if model is not None:
        model.load_state_dict(ckpt["state_dict"])
    return ckpt
