"""The training framework (OpenNRE's third layer, after encoder and bag model): a
:class:`Trainer` fits any :class:`mattlib.models.mil.BagModel` with model selection on the
**validation** split only; :func:`fit` is its one-call form.

Track-level (non-bag) training is the same code with bags of one track.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mattlib.training import checkpoints
from mattlib.training.bags import BagDataset, bag_loader
from mattlib.training.config import FitConfig, TrainingError
from mattlib.training.runtime import autocast, chunk_kwargs, deterministic_on_cpu, resolve_device, seed_everything

__all__ = ["FitResult", "Trainer", "fit"]


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    best_epoch : int
        1-based epoch whose weights were kept (best validation accuracy; ties -> lower
        validation loss, then earlier epoch).
    best_val_accuracy, best_val_loss : float
    history : list of dict
        Per epoch: ``epoch``, ``train_loss`` (mean over bags), ``val_accuracy``, ``val_loss``,
        ``seconds`` (and ``val_late_accuracy`` with late-fusion selection).
    best_state : dict
        State dict (CPU tensors) of the best epoch; the model is left loaded with it.
    checkpoint_path : str or None
        ``best.pt`` under ``checkpoint_dir`` when given.
    device : str
    stopped_early : bool
    late_epoch, late_val_accuracy, late_state
        With ``late_val_data``: the epoch of the best late-fused validation accuracy, that
        accuracy and its state dict (None / {} otherwise).
    """

    best_epoch: int
    best_val_accuracy: float
    best_val_loss: float
    device: str
    history: list[dict] = field(default_factory=list)
    best_state: dict = field(default_factory=dict, repr=False)
    checkpoint_path: str | None = None
    stopped_early: bool = False
    late_epoch: int | None = None
    late_val_accuracy: float | None = None
    late_state: dict = field(default_factory=dict, repr=False)


def class_weight_tensor(spec, counts: np.ndarray) -> torch.Tensor | None:
    """Cross-entropy class weights of :attr:`FitConfig.class_weights` for training ``counts``."""
    if spec is None:
        return None
    if isinstance(spec, str):
        w = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)
    w = np.asarray(spec, dtype=np.float32)
    if w.shape != counts.shape:
        raise TrainingError(f"class_weights has shape {w.shape}, expected {counts.shape}")
    return torch.from_numpy(w)


class Trainer:
    r"""Train a bag model (or an instance model on bags of one) with AdamW; select on validation.

    After every epoch the model is scored on ``val_data`` with the test's headline metric, track
    accuracy (each bag's prediction given to its tracks, compared with their own genres; the
    model is called without labels, so MATT attends with every genre's query). The epoch with
    the best validation accuracy is kept (ties: lower validation loss, then the earlier epoch),
    in memory and as ``checkpoint_dir/best.pt``; training stops after ``config.patience`` epochs
    without a better accuracy. The test split is never seen here. The loss is

    .. math:: \ell = \mathrm{CE}\big(z + \tau \log \pi,\ y;\ w\big)

    with logits :math:`z`, the training prior :math:`\pi`, :math:`\tau` =
    ``config.logit_adjustment`` and class weights :math:`w` (``config.class_weights``).

    Parameters
    ----------
    model : nn.Module
        ``model(instances, mask, labels=None) -> (logits (B, C), attention)``, e.g. a
        :class:`mattlib.models.mil.BagModel`; labels are passed in training (MATT's label query).
    train_data, val_data : BagDataset
    config : FitConfig
        Epochs, optimiser, selection and loss settings (validated).
    checkpoint_dir : path, optional
        Where ``best.pt`` is written (see :func:`mattlib.training.load_checkpoint`). While
        training, ``last.pt`` holds the state after the latest epoch (weights, optimiser, random
        generators, history); a killed run resumes from it when called again with the same data
        and settings, and it is removed when training ends.
    encode_chunk : int, optional
        Validate one whole bag at a time, encoding at most this many instances at once.
    late_val_data : BagDataset, optional
        Album bags of the validation split, for an instance model (bags of one): the late fusion
        of its track predictions is scored on them after every epoch and its best epoch is kept
        as well (``FitResult.late_state``): the late-fusion control is selected like the bag models.
    bag_weights : Mapping bag id -> float, optional
        Per-bag loss weights (e.g. 1 / album size for single tracks); the batch loss is their
        weighted mean.
    class_counts : (C,) floats, optional
        The prior of ``class_weights`` and ``logit_adjustment`` (default: the training bags'
        labels). Pass training tracks per genre to give bag and track models the same prior.
    progress : bool, default True
        A tqdm bar per epoch.
    num_workers : int, default 0
        DataLoader worker processes reading bags (useful for mel memmaps on a GPU machine).

    See :func:`fit` for an example.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: BagDataset,
        val_data: BagDataset,
        config: FitConfig,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        encode_chunk: int | None = None,
        late_val_data: BagDataset | None = None,
        bag_weights: Mapping[str, float] | None = None,
        class_counts: Sequence[float] | None = None,
        progress: bool = True,
        num_workers: int = 0,
    ) -> None:
        if list(train_data.classes) != list(val_data.classes):
            raise TrainingError("train_data and val_data use different class lists")
        self.model, self.train_data, self.val_data, self.config = model, train_data, val_data, config
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.encode_chunk, self.late_val_data, self.bag_weights = encode_chunk, late_val_data, bag_weights
        self.progress, self.num_workers = progress, num_workers
        self.device = resolve_device(config.device)
        n_classes = len(train_data.classes)
        counts = np.bincount(train_data.labels, minlength=n_classes).astype(np.float64)
        if class_counts is not None:
            counts = np.asarray(class_counts, dtype=np.float64)
            if counts.shape != (n_classes,):
                raise TrainingError(f"class_counts has shape {counts.shape}, expected ({n_classes},)")
        self.counts, self.class_counts_given = counts, class_counts is not None

    # ---------------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train, select on validation, leave the model loaded with the selected epoch."""
        from tqdm.auto import tqdm

        cfg, dev = self.config, self.device
        with deterministic_on_cpu(dev):
            gen = seed_everything(cfg.seed)
            self.model.to(dev)
            self._set_loss()
            opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            self._set_loaders(gen)
            progress, start = self._start(opt, gen)
            stopped = False
            for epoch in range(start, cfg.epochs + 1):
                row = self._train_epoch(epoch, opt)
                self._validate(row, progress)
                progress.history.append(row)
                if self.progress:
                    tqdm.write(
                        f"epoch {epoch}: train_loss={row['train_loss']:.4f} val_acc={row['val_accuracy']:.4f} "
                        f"val_loss={row['val_loss']:.4f}"
                    )
                self._select(row, progress)
                if self.checkpoint_dir is not None:
                    checkpoints.save_last(
                        self._last_path, key=self._key, model=self.model, opt=opt, gen=gen, progress=progress
                    )
                if self._patience_spent(progress):
                    stopped = epoch < cfg.epochs
                    break
            if self.checkpoint_dir is not None:
                self._last_path.unlink(missing_ok=True)  # finished: nothing to resume
            self.model.load_state_dict(progress.best_state)
            return self._result(progress, stopped)

    # ---------------------------------------------------------------------------------------
    def _set_loss(self) -> None:
        weights = class_weight_tensor(self.config.class_weights, self.counts)
        self.weights = None if weights is None else weights.to(self.device)
        prior = np.maximum(self.counts, 1e-12) / self.counts.sum()
        self.offset = torch.tensor(
            self.config.logit_adjustment * np.log(prior), dtype=torch.float32, device=self.device
        )

    def _set_loaders(self, gen: torch.Generator) -> None:
        dev, size, workers = self.device, self.config.batch_size, self.num_workers
        self.train_loader = bag_loader(
            self.train_data, batch_size=size, shuffle=True, generator=gen, device=dev, num_workers=workers
        )
        self.val_loader = bag_loader(
            self.val_data, batch_size=1 if self.encode_chunk else size, shuffle=False, device=dev, num_workers=workers
        )
        self.late_loader = None
        if self.late_val_data is not None:
            self.late_loader = bag_loader(self.late_val_data, batch_size=size, shuffle=False, device=dev)

    def _start(self, opt, gen: torch.Generator) -> tuple[checkpoints.Progress, int]:
        """A fresh :class:`~mattlib.training.checkpoints.Progress`, or the one of ``last.pt``."""
        from tqdm.auto import tqdm

        cfg = self.config
        self._key = checkpoints.run_key(
            self.model,
            self.train_data,
            self.val_data,
            epochs=cfg.epochs,
            patience=cfg.patience,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            class_weights=cfg.class_weights,
            logit_adjustment=cfg.logit_adjustment,
            amp=cfg.amp and self.device.type == "cuda",
            late_val=None if self.late_val_data is None else checkpoints.ids_digest(self.late_val_data),
            bag_weights=None
            if self.bag_weights is None
            else sorted((str(k), float(v)) for k, v in self.bag_weights.items()),
            class_counts=[float(c) for c in self.counts] if self.class_counts_given else None,
        )
        if self.checkpoint_dir is None:
            return checkpoints.Progress(), 1
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._last_path = self.checkpoint_dir / "last.pt"
        resumed = checkpoints.resume(self._last_path, key=self._key, model=self.model, opt=opt, gen=gen)
        if resumed is None:
            return checkpoints.Progress(), 1
        start = resumed.history[-1]["epoch"] + 1 if resumed.history else 1
        if self.progress:
            tqdm.write(f"resuming after epoch {start - 1} from {self._last_path}")
        if self._patience_spent(resumed):
            start = cfg.epochs + 1  # it had already stopped early
        return resumed, start

    def _train_epoch(self, epoch: int, opt) -> dict:
        """One pass over the training bags; the epoch's history row so far."""
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        self.model.train()
        loss_sum, n_seen = 0.0, 0
        self._bar = bar = tqdm(
            self.train_loader, desc=f"epoch {epoch}/{self.config.epochs}", leave=False, disable=not self.progress
        )
        for batch in bar:
            batch = batch.to(self.device)
            loss = self._loss(batch, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(batch.labels)
            n_seen += len(batch.labels)
            bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
        return {"epoch": epoch, "train_loss": loss_sum / max(n_seen, 1), "t0": t0}

    def _loss(self, batch, epoch: int) -> torch.Tensor:
        with autocast(self.device, self.config.amp):
            logits, _ = self.model(batch.instances, batch.mask, batch.labels)
        weighted = self.bag_weights is not None
        loss = F.cross_entropy(
            logits.float() + self.offset, batch.labels, weight=self.weights, reduction="none" if weighted else "mean"
        )
        if weighted:
            w = torch.tensor([float(self.bag_weights[b]) for b in batch.bag_ids], device=self.device)
            loss = (loss * w).sum() / w.sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
        return loss

    def _validate(self, row: dict, progress: checkpoints.Progress) -> None:
        """Complete ``row`` with the validation scores (and the late-fusion selection)."""
        t0 = row.pop("t0")
        row["val_accuracy"], row["val_loss"] = validation_scores(
            self.model, self.val_loader, self.device, self.config.amp, self.offset, self.encode_chunk
        )
        row["seconds"] = time.perf_counter() - t0
        if self.late_loader is not None:
            row["val_late_accuracy"] = late_fused_accuracy(self.model, self.late_loader, self.device, self.config.amp)
            late = progress.late
            if late["accuracy"] is None or row["val_late_accuracy"] > late["accuracy"]:
                progress.late = {
                    "accuracy": row["val_late_accuracy"],
                    "epoch": row["epoch"],
                    "state": checkpoints.cpu_state(self.model),
                    "since": 0,
                }
            else:
                late["since"] += 1
        self._bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_acc=f"{row['val_accuracy']:.4f}")
        self._bar.close()

    def _select(self, row: dict, progress: checkpoints.Progress) -> None:
        """Keep this epoch if it is the best on validation so far (and write ``best.pt``)."""
        key = (row["val_accuracy"], -row["val_loss"])
        if progress.best is not None and key <= progress.best:
            progress.since_best += 1
            return
        improved_accuracy = progress.best is None or row["val_accuracy"] > progress.best[0]
        progress.best, progress.best_epoch = key, row["epoch"]
        progress.best_state = checkpoints.cpu_state(self.model)
        if self.checkpoint_dir is not None:
            checkpoints.save_best(self._best_path, progress=progress, classes=list(self.train_data.classes))
        progress.since_best = 0 if improved_accuracy else progress.since_best + 1

    def _patience_spent(self, progress: checkpoints.Progress) -> bool:
        """``patience`` epochs without a better validation accuracy (and without a better
        late-fused one, when that is selected too)."""
        patience = self.config.patience
        if patience is None or progress.since_best < patience:
            return False
        return self.late_val_data is None or progress.late["since"] >= patience

    @property
    def _best_path(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    def _result(self, progress: checkpoints.Progress, stopped: bool) -> FitResult:
        late = progress.late
        return FitResult(
            best_epoch=progress.best_epoch,
            best_val_accuracy=float(progress.best[0]),
            best_val_loss=float(-progress.best[1]),
            history=progress.history,
            best_state=progress.best_state,
            checkpoint_path=None if self.checkpoint_dir is None else str(self._best_path),
            device=str(self.device),
            stopped_early=stopped,
            late_epoch=late["epoch"] if self.late_val_data is not None else None,
            late_val_accuracy=late["accuracy"],
            late_state=late["state"],
        )


def fit(model: nn.Module, train_data: BagDataset, val_data: BagDataset, config: FitConfig, **options) -> FitResult:
    """Train ``model`` with :class:`Trainer` (``options``: its keyword arguments) and return the
    :class:`FitResult`; the model is left loaded with the epoch selected on validation.

    Examples
    --------
    Two bags of two tracks, a mean-pooled MLP, two epochs on the CPU:

    >>> import numpy as np, pandas as pd
    >>> from mattlib.models import encoders, mil
    >>> rows = pd.DataFrame({"bag_id": ["a", "a", "b", "b"], "track_id": [1, 2, 3, 4],
    ...                      "bag_genre": ["Rock", "Rock", "Folk", "Folk"]})
    >>> tracks = pd.DataFrame(np.eye(4, dtype=np.float32), index=[1, 2, 3, 4])
    >>> data = BagDataset(rows, tracks, ["Rock", "Folk"])
    >>> encoder = encoders.make_encoder("mlp", input_shape=4, hidden=(8,))
    >>> net = mil.BagModel(encoder, mil.make_pooling("mean", in_dim=encoder.out_dim, n_classes=2))
    >>> result = fit(net, data, data, FitConfig(epochs=2, device="cpu"), progress=False)
    >>> [row["epoch"] for row in result.history], result.best_epoch in (1, 2)
    ([1, 2], True)
    """
    return Trainer(model, train_data, val_data, config, **options).fit()


def validation_scores(model, loader, device, amp, loss_offset, encode_chunk=None) -> tuple[float, float]:
    """(track accuracy, mean bag loss) on a validation loader: each bag's prediction is given to
    its tracks and compared with their own genres, as the test's headline metric."""
    model.eval()
    n_bags, hits, n_tracks, loss_sum = 0, 0, 0, 0.0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            with autocast(device, amp):
                logits, _ = model(batch.instances, batch.mask, **chunk_kwargs(encode_chunk))
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits + loss_offset, batch.labels, reduction="sum"))
            h, t = loader.dataset.track_hits(batch.bag_ids, logits.argmax(1).cpu().numpy())
            hits, n_tracks, n_bags = hits + h, n_tracks + t, n_bags + len(batch.labels)
    return hits / max(n_tracks, 1), loss_sum / max(n_bags, 1)


def late_fused_accuracy(model, loader, device, amp) -> float:
    """Track accuracy on album bags of the late fusion of an instance model: every track scored
    alone (a bag of one), its genre probabilities averaged over the bag, the bag's argmax given
    to its tracks."""
    model.eval()
    hits, n_tracks = 0, 0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            single = batch.instances[batch.mask].unsqueeze(1)  # (K, 1, ...)
            with autocast(device, amp):
                logits, _ = model(single, torch.ones(single.shape[:2], dtype=torch.bool, device=device))
            probs = torch.softmax(logits.float(), dim=1)
            bag_of = torch.arange(len(batch.labels), device=device).repeat_interleave(batch.mask.sum(1))
            fused = torch.zeros(len(batch.labels), probs.shape[1], device=device).index_add_(0, bag_of, probs)
            h, t = loader.dataset.track_hits(batch.bag_ids, fused.argmax(1).cpu().numpy())
            hits, n_tracks = hits + h, n_tracks + t
    return hits / max(n_tracks, 1)
