"""Training framework: bag datasets, one fit loop for instance- and bag-level models, predict.

OpenNRE's third layer (after encoder and bag model): :class:`BagDataset` turns membership rows
(``mattlib.data.bags``) plus an instance array into bags, :func:`collate_bags` pads them,
:func:`fit` trains any :class:`mattlib.models.mil.BagModel` with model selection on the *validation*
split only, :func:`predict` scores bags and returns attention.

Track-level (non-bag) training is the same code with bags of one track.
"""

from __future__ import annotations

import copy
import os
import random
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mattlib import devices
from mattlib.atomic import write_atomic

__all__ = [
    "BagBatch",
    "BagDataset",
    "FitResult",
    "Predictions",
    "collate_bags",
    "fit",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "seed_everything",
]


# --------------------------------------------------------------------------------------------
# data


class BagDataset(Dataset):
    """Bags of one split as a torch Dataset; instances are read lazily, one bag at a time.

    Parameters
    ----------
    membership : DataFrame
        Membership rows (``mattlib.data.bags``): ``bag_id``, ``track_id`` and the label column;
        row order within a bag is instance order. Pass the rows of one split, or set ``split``.
    instances : array-like (n_tracks, ...) or DataFrame
        A feature matrix ``(n_tracks, d)`` or a log-mel array ``(n_tracks, n_mels, frames)``
        (a float16 memmap is fine: only the rows of one bag are read per item). A DataFrame
        brings its own track-id index.
    classes : sequence of str
        Ordered genre names; a bag's label is the index of its genre in it.
    track_index : sequence of int or Mapping[int, int], optional
        Track id of every row of ``instances`` (sequence), or track_id -> row (mapping).
        Required unless ``instances`` is a DataFrame.
    split : str, optional
        Keep only membership rows with this ``split``.
    label_column : str, default 'bag_genre'
        Column holding the bag's genre (constant within a bag).
    track_label_column : str, default 'genre'
        Column holding each track's own genre (:attr:`genre_counts`; the bag label when absent).

    Every member track is kept: cut large training bags into chunks upstream
    (:func:`mattlib.data.bags.make_bags` ``max_size``), never drop tracks.

    Items
    -----
    ``(bag_id: str, instances: float32 tensor (n, ...), label: int)``.
    """

    def __init__(
        self,
        membership: pd.DataFrame,
        instances,
        classes: Sequence[str],
        *,
        track_index: Sequence[int] | Mapping[int, int] | None = None,
        split: str | None = None,
        label_column: str = "bag_genre",
        track_label_column: str = "genre",
    ) -> None:
        for col in ("bag_id", "track_id", label_column):
            if col not in membership.columns:
                raise ValueError(f"membership lacks column {col!r}")
        if split is not None:
            if "split" not in membership.columns:
                raise ValueError("split given but membership has no 'split' column")
            membership = membership[membership["split"] == split]
        if len(membership) == 0:
            raise ValueError(f"no membership rows (split={split!r})")
        if isinstance(instances, pd.DataFrame):
            track_index = instances.index
            instances = instances.to_numpy(dtype=np.float32)
        if track_index is None:
            raise ValueError("track_index is required when instances is not a DataFrame")
        if isinstance(track_index, Mapping):
            keys = np.fromiter((int(k) for k in track_index), dtype=np.int64, count=len(track_index))
            values = np.fromiter((int(v) for v in track_index.values()), dtype=np.int64, count=len(track_index))
        else:
            keys = np.asarray(track_index).astype(np.int64)
            if len(keys) != len(instances):
                raise ValueError(f"track_index has {len(keys)} ids for {len(instances)} instance rows")
            values = np.arange(len(keys), dtype=np.int64)
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes contain duplicates")
        class_index = {c: i for i, c in enumerate(self.classes)}
        if track_label_column not in membership.columns:
            track_label_column = label_column

        self.instances = instances
        self.instance_shape = tuple(instances.shape[1:])
        # one pass over all rows (not one pandas call per bag: FMA medium has ~10^4 bags); bags
        # in order of first appearance, tracks in row order within a bag
        codes, uniques = pd.factorize(membership["bag_id"], sort=False)
        n_bags = len(uniques)
        bag_genre = membership[label_column].astype(str).to_numpy()
        first = np.unique(codes, return_index=True)[1]  # each bag's first row
        mixed = bag_genre != bag_genre[first[codes]]
        if mixed.any():
            bag = codes[np.argmax(mixed)]
            genres = list(pd.unique(bag_genre[codes == bag]))
            raise ValueError(f"bag {uniques[bag]!r} has several labels in {label_column!r}: {genres}")
        labels = pd.Series(bag_genre[first]).map(class_index)
        if labels.isna().any():
            bag = int(np.argmax(labels.isna().to_numpy()))
            raise ValueError(f"bag {uniques[bag]!r}: genre {bag_genre[first[bag]]!r} is not in classes {self.classes}")
        track_genres = membership[track_label_column].astype(str).map(class_index).to_numpy()
        unknown = pd.isna(track_genres)
        if unknown.any():
            raise ValueError(f"bag {uniques[codes[np.argmax(unknown)]]!r}: track genres not in classes {self.classes}")
        lookup = pd.Series(values, index=keys)
        lookup = lookup[~lookup.index.duplicated(keep="last")]
        tids = membership["track_id"].to_numpy().astype(np.int64)
        position = lookup.index.get_indexer(tids)
        if (position < 0).any():
            missing = tids[position < 0]
            raise ValueError(f"{len(missing)} member tracks have no instance row, e.g. {missing[:5].tolist()}")
        rows = lookup.to_numpy()[position]
        order = np.argsort(codes, kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=n_bags))[:-1]
        self.bag_ids: list[str] = [str(b) for b in uniques]
        self.rows: list[np.ndarray] = np.split(rows[order], bounds)
        self.labels = labels.to_numpy(dtype=np.int64)
        #: (n_bags, C): tracks of each genre per bag (scores a bag prediction at track level).
        self.genre_counts = np.zeros((n_bags, len(self.classes)), dtype=np.int64)
        np.add.at(self.genre_counts, (codes, track_genres.astype(np.int64)), 1)
        self._position = {b: i for i, b in enumerate(self.bag_ids)}

    def __len__(self) -> int:
        return len(self.bag_ids)

    def __getitem__(self, i: int):
        rows = self.rows[i]
        order = np.argsort(rows, kind="stable")  # sorted reads are kinder to a memmap
        data = np.empty((len(rows), *self.instance_shape), dtype=np.float32)
        data[order] = np.asarray(self.instances[rows[order]], dtype=np.float32)
        return self.bag_ids[i], torch.from_numpy(data), int(self.labels[i])

    def track_hits(self, bag_ids: Sequence[str], predicted) -> tuple[int, int]:
        """(tracks whose own genre is their bag's predicted genre, tracks) over ``bag_ids``."""
        rows = self.genre_counts[[self._position[str(b)] for b in bag_ids]]
        pred = np.asarray(predicted, dtype=np.int64)
        return int(rows[np.arange(len(rows)), pred].sum()), int(rows.sum())


@dataclass
class BagBatch:
    """A padded batch: ``instances (B, N_max, ...)`` float32, ``mask (B, N_max)`` bool,
    ``labels (B,)`` long, ``bag_ids`` list of B str."""

    instances: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    bag_ids: list[str]

    def pin_memory(self) -> BagBatch:
        """Page-locked copy (the DataLoader calls this when ``pin_memory=True``)."""
        return BagBatch(self.instances.pin_memory(), self.mask.pin_memory(), self.labels.pin_memory(), self.bag_ids)

    def to(self, device: torch.device | str) -> BagBatch:
        """Move tensors to ``device`` (non-blocking where possible)."""
        nb = torch.device(device).type == "cuda"
        return BagBatch(
            self.instances.to(device, non_blocking=nb),
            self.mask.to(device, non_blocking=nb),
            self.labels.to(device, non_blocking=nb),
            self.bag_ids,
        )


def collate_bags(items: Sequence[tuple[str, torch.Tensor, int]]) -> BagBatch:
    """Pad a list of ``(bag_id, instances (n, ...), label)`` into a :class:`BagBatch`.

    Padding is zeros with ``mask`` False; ``N_max`` is the largest bag of the batch.
    """
    if not items:
        raise ValueError("empty batch")
    sizes = [x.shape[0] for _, x, _ in items]
    shape = items[0][1].shape[1:]
    n_max = max(sizes)
    inst = torch.zeros((len(items), n_max, *shape), dtype=torch.float32)
    mask = torch.zeros((len(items), n_max), dtype=torch.bool)
    for b, (_, x, _) in enumerate(items):
        inst[b, : x.shape[0]] = x
        mask[b, : x.shape[0]] = True
    labels = torch.tensor([y for _, _, y in items], dtype=torch.long)
    return BagBatch(inst, mask, labels, [str(b) for b, _, _ in items])


# --------------------------------------------------------------------------------------------
# helpers


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """:func:`mattlib.devices.resolve` as a ``torch.device`` (a ``torch.device`` passes through)."""
    return device if isinstance(device, torch.device) else torch.device(devices.resolve(device))


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a torch Generator seeded likewise."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _loader(
    data: BagDataset, *, batch_size: int, shuffle: bool, generator=None, device=None, num_workers: int = 0
) -> DataLoader:
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_bags,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device is not None and device.type == "cuda",
    )


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def _class_weights(spec, counts: np.ndarray) -> torch.Tensor | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or an array, got {spec!r}")
        w = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)
    w = np.asarray(spec, dtype=np.float32)
    if w.shape != counts.shape:
        raise ValueError(f"class_weights has shape {w.shape}, expected {counts.shape}")
    return torch.from_numpy(w)


# --------------------------------------------------------------------------------------------
# fit


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
        ``seconds``.
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
    history: list[dict] = field(default_factory=list)
    best_state: dict = field(default_factory=dict, repr=False)
    checkpoint_path: str | None = None
    device: str = "cpu"
    stopped_early: bool = False
    late_epoch: int | None = None
    late_val_accuracy: float | None = None
    late_state: dict = field(default_factory=dict, repr=False)


def _chunk_kwargs(encode_chunk: int | None) -> dict:
    return {"encode_chunk": encode_chunk} if encode_chunk else {}


def _evaluate_loss_acc(model, loader, device, amp, loss_offset, encode_chunk=None) -> tuple[float, float]:
    """(track accuracy, mean bag loss) on a validation loader: each bag's prediction is given to
    its tracks and compared with their own genres, as the test's headline metric."""
    model.eval()
    n_bags, hits, n_tracks, loss_sum = 0, 0, 0, 0.0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            with _autocast(device, amp):
                logits, _ = model(batch.instances, batch.mask, **_chunk_kwargs(encode_chunk))
            logits = logits.float()
            loss_sum += float(F.cross_entropy(logits + loss_offset, batch.labels, reduction="sum"))
            h, t = loader.dataset.track_hits(batch.bag_ids, logits.argmax(1).cpu().numpy())
            hits, n_tracks, n_bags = hits + h, n_tracks + t, n_bags + len(batch.labels)
    return hits / max(n_tracks, 1), loss_sum / max(n_bags, 1)


def _late_accuracy(model, loader, device, amp) -> float:
    """Track accuracy on album bags of the late fusion of an instance model: every track scored
    alone (a bag of one), its genre probabilities averaged over the bag, the bag's argmax given
    to its tracks."""
    model.eval()
    hits, n_tracks = 0, 0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            single = batch.instances[batch.mask].unsqueeze(1)  # (K, 1, ...)
            with _autocast(device, amp):
                logits, _ = model(single, torch.ones(single.shape[:2], dtype=torch.bool, device=device))
            probs = torch.softmax(logits.float(), dim=1)
            bag_of = torch.arange(len(batch.labels), device=device).repeat_interleave(batch.mask.sum(1))
            fused = torch.zeros(len(batch.labels), probs.shape[1], device=device).index_add_(0, bag_of, probs)
            h, t = loader.dataset.track_hits(batch.bag_ids, fused.argmax(1).cpu().numpy())
            hits, n_tracks = hits + h, n_tracks + t
    return hits / max(n_tracks, 1)


def fit(
    model: nn.Module,
    train_data: BagDataset,
    val_data: BagDataset,
    *,
    epochs: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    device: str | torch.device = "auto",
    seed: int = 0,
    patience: int | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    class_weights: str | Sequence[float] | None = None,
    logit_adjustment: float = 0.0,
    amp: bool = True,
    num_workers: int = 0,
    progress: bool = True,
    encode_chunk: int | None = None,
    late_val_data: BagDataset | None = None,
    bag_weights: Mapping[str, float] | None = None,
    class_counts: Sequence[float] | None = None,
) -> FitResult:
    """Train a bag model (or an instance model on bags of one) with Adam.

    Model selection uses the **validation split only**: after every epoch the model is scored
    on ``val_data`` with the test's headline metric, track accuracy (each bag's prediction given
    to its tracks, compared with their own genres; the model is called without labels, i.e.
    MATT attends with every genre's query); the epoch with the best validation accuracy is kept
    (ties: lower validation loss, then the earlier epoch), in memory and as
    ``checkpoint_dir/best.pt``.
    Training stops early after ``patience`` epochs without a better validation accuracy.
    The test split is never seen here.

    Parameters
    ----------
    model : nn.Module
        ``model(instances, mask, labels=None) -> (logits (B, C), attention)``, e.g. a
        :class:`mattlib.models.mil.BagModel`. Labels are passed during training (MATT's label query).
    train_data, val_data : BagDataset
    epochs : int
        Maximum number of epochs.
    batch_size : int, default 16
        Bags per step.
    lr, weight_decay : float
        Adam(W) learning rate and decoupled weight decay.
    device : 'auto', 'cpu', 'cuda', ...
        'auto' = CUDA when present, else CPU.
    seed : int
        Seeds python, numpy and torch (shuffling, dropout; build the model after your own
        ``torch.manual_seed`` to fix its initial weights). On CPU, deterministic algorithms are
        switched on for the duration of the call (restored afterwards), so a CPU run is
        repeatable; CUDA runs are not bit-exact (cuDNN settings are left as they are).
    patience : int, optional
        Early-stopping patience in epochs (None: run all epochs).
    checkpoint_dir : path, optional
        Where ``best.pt`` is written (``state_dict`` + plain metadata; loads with
        ``torch.load(..., weights_only=True)``; see :func:`load_checkpoint`). While training,
        ``last.pt`` holds the state after the latest epoch (weights, optimizer, random
        generators, history); a run that was killed resumes from it when called again with the
        same data and settings, and it is removed when training ends.
    class_weights : None, 'balanced' or (C,) floats
        Cross-entropy class weights; 'balanced' = n_bags / (C * bags of the class) from the
        training split. Off by default (the paper has none).
    logit_adjustment : float, default 0.0
        tau of the logit-adjusted loss (Menon et al. 2021): the loss sees
        ``logits + tau * log(prior)`` with the training-split class priors; predictions use the
        raw logits. 0 = plain cross-entropy. Validation loss uses the same loss.
    amp : bool, default True
        bf16 autocast on CUDA (ignored on CPU).
    num_workers : int, default 0
        DataLoader worker processes reading bags (useful for mel memmaps on a GPU machine).
    progress : bool, default True
        A tqdm bar per epoch (loss; validation accuracy at the end of the epoch).
    encode_chunk : int, optional
        Validate one whole bag at a time, encoding at most this many instances at once
        (:class:`mattlib.models.mil.BagModel`); bounds memory on large validation albums.
    late_val_data : BagDataset, optional
        Album bags of the validation split, for an instance model (bags of one): the late fusion
        of its track predictions is scored on them after every epoch, and the epoch with the best
        late-fused validation accuracy is kept as well (``FitResult.late_state``), so the
        late-fusion control is selected by the same criterion as the bag models.
    bag_weights : Mapping bag id -> float, optional
        Per-bag loss weights (e.g. 1 / album size for single tracks, so every album weighs in the
        loss as much as in bag training); the batch loss is their weighted mean.
    class_counts : (C,) floats, optional
        The counts ``class_weights`` and ``logit_adjustment`` take their prior from (default:
        the training bags' labels). Pass training tracks per genre to give bag and track models
        the same prior.

    Returns
    -------
    FitResult
    """
    from tqdm.auto import tqdm

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if patience is not None and patience < 1:
        raise ValueError(f"patience must be >= 1 or None, got {patience}")
    if list(train_data.classes) != list(val_data.classes):
        raise ValueError("train_data and val_data use different class lists")
    n_classes = len(train_data.classes)
    dev = resolve_device(device)
    deterministic_before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        gen = seed_everything(seed)
        model.to(dev)
        counts = np.bincount(train_data.labels, minlength=n_classes).astype(np.float64)
        if class_counts is not None:
            counts = np.asarray(class_counts, dtype=np.float64)
            if counts.shape != (n_classes,):
                raise ValueError(f"class_counts has shape {counts.shape}, expected ({n_classes},)")
        weights = _class_weights(class_weights, counts)
        weights = None if weights is None else weights.to(dev)
        prior = np.maximum(counts, 1e-12) / counts.sum()
        offset = torch.tensor(logit_adjustment * np.log(prior), dtype=torch.float32, device=dev)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        train_loader = _loader(
            train_data, batch_size=batch_size, shuffle=True, generator=gen, device=dev, num_workers=num_workers
        )
        val_loader = _loader(
            val_data, batch_size=1 if encode_chunk else batch_size, shuffle=False, device=dev, num_workers=num_workers
        )
        late_loader = None
        if late_val_data is not None:
            late_loader = _loader(late_val_data, batch_size=batch_size, shuffle=False, device=dev)
        late = {"accuracy": None, "epoch": 0, "state": {}, "since": 0}

        history: list[dict] = []
        best: tuple[float, float] | None = None  # (acc, -loss)
        best_epoch, best_state, since_best, stopped = 0, {}, 0, False
        ckpt_path, last_path, start_epoch = None, None, 1
        run_key = _run_key(
            model,
            train_data,
            val_data,
            epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            class_weights=class_weights,
            logit_adjustment=logit_adjustment,
            amp=amp and dev.type == "cuda",
            late_val=None if late_val_data is None else _ids_digest(late_val_data),
            bag_weights=None if bag_weights is None else sorted((str(k), float(v)) for k, v in bag_weights.items()),
            class_counts=None if class_counts is None else [float(c) for c in counts],
        )
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
            ckpt_path = str(Path(checkpoint_dir) / "best.pt")
            last_path = Path(checkpoint_dir) / "last.pt"
            resumed = _resume(last_path, run_key, model, opt, gen)
            if resumed is not None:
                history, best, best_epoch, best_state, since_best, late = resumed
                start_epoch = history[-1]["epoch"] + 1 if history else 1
                if progress:
                    tqdm.write(f"resuming after epoch {start_epoch - 1} from {last_path}")
                if _patience_spent(patience, since_best, late, late_loader):
                    start_epoch = epochs + 1  # it had already stopped early
        for epoch in range(start_epoch, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum, n_seen = 0.0, 0
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
            for batch in bar:
                batch = batch.to(dev)
                with _autocast(dev, amp):
                    logits, _ = model(batch.instances, batch.mask, batch.labels)
                loss = F.cross_entropy(
                    logits.float() + offset, batch.labels, weight=weights, reduction="none" if bag_weights else "mean"
                )
                if bag_weights is not None:
                    w = torch.tensor([float(bag_weights[b]) for b in batch.bag_ids], device=dev)
                    loss = (loss * w).sum() / w.sum()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(batch.labels)
                n_seen += len(batch.labels)
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}")
            val_acc, val_loss = _evaluate_loss_acc(model, val_loader, dev, amp, offset, encode_chunk)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / max(n_seen, 1),
                "val_accuracy": val_acc,
                "val_loss": val_loss,
                "seconds": time.perf_counter() - t0,
            }
            if late_loader is not None:
                row["val_late_accuracy"] = _late_accuracy(model, late_loader, dev, amp)
                if late["accuracy"] is None or row["val_late_accuracy"] > late["accuracy"]:
                    late = {
                        "accuracy": row["val_late_accuracy"],
                        "epoch": epoch,
                        "state": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
                        "since": 0,
                    }
                else:
                    late["since"] += 1
            history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_acc=f"{val_acc:.4f}")
            bar.close()
            if progress:
                tqdm.write(
                    f"epoch {epoch}: train_loss={row['train_loss']:.4f} val_acc={val_acc:.4f} val_loss={val_loss:.4f}"
                )
            key = (val_acc, -val_loss)
            if best is None or key > best:
                improved_acc = best is None or val_acc > best[0]
                best, best_epoch = key, epoch
                best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
                if ckpt_path is not None:
                    best_checkpoint = {
                        "state_dict": best_state,
                        "epoch": epoch,
                        "val_accuracy": float(val_acc),
                        "val_loss": float(val_loss),
                        "classes": list(train_data.classes),
                        "history": copy.deepcopy(history),
                    }
                    write_atomic(ckpt_path, lambda tmp, state=best_checkpoint: torch.save(state, tmp))
                since_best = 0 if improved_acc else since_best + 1
            else:
                since_best += 1
            if last_path is not None:
                _save_last(
                    last_path,
                    run_key=run_key,
                    model=model,
                    opt=opt,
                    gen=gen,
                    history=history,
                    best=best,
                    best_epoch=best_epoch,
                    best_state=best_state,
                    since_best=since_best,
                    late=late,
                )
            if _patience_spent(patience, since_best, late, late_loader):
                stopped = epoch < epochs
                break
        if last_path is not None:
            last_path.unlink(missing_ok=True)  # finished: nothing to resume
        model.load_state_dict(best_state)
        assert best is not None
        return FitResult(
            best_epoch=best_epoch,
            best_val_accuracy=float(best[0]),
            best_val_loss=float(-best[1]),
            history=history,
            best_state=best_state,
            checkpoint_path=ckpt_path,
            device=str(dev),
            stopped_early=stopped,
            late_epoch=late["epoch"] if late_loader is not None else None,
            late_val_accuracy=late["accuracy"],
            late_state=late["state"],
        )
    finally:
        torch.use_deterministic_algorithms(deterministic_before[0], warn_only=deterministic_before[1])


def _patience_spent(patience: int | None, since_best: int, late: dict, late_loader) -> bool:
    """Early stopping: ``patience`` epochs without a better validation accuracy (and without a
    better late-fused one, when that is selected too)."""
    if patience is None or since_best < patience:
        return False
    return late_loader is None or late["since"] >= patience


def _run_key(model: nn.Module, train_data: BagDataset, val_data: BagDataset, **settings) -> dict:
    """Everything that shapes a training run: the data, the model's architecture (parameter names
    and shapes), every fit setting and the mattlib code. A resume point is used only on a match."""
    from mattlib.provenance import code_digest

    weights = settings.pop("class_weights")
    return {
        "classes": list(train_data.classes),
        "n_train": len(train_data),
        "n_val": len(val_data),
        "train_bags": _ids_digest(train_data),
        "val_bags": _ids_digest(val_data),
        "model": type(model).__name__,
        "architecture": [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()],
        **{k: float(v) if isinstance(v, float) else v for k, v in settings.items()},
        "class_weights": weights if weights is None or isinstance(weights, str) else [float(w) for w in weights],
        "code": code_digest(),
    }


def _ids_digest(data: BagDataset) -> str:
    import hashlib

    return hashlib.sha1(repr((list(data.bag_ids), list(map(int, data.labels)))).encode()).hexdigest()


def _save_last(
    path: Path,
    *,
    run_key: dict,
    model: nn.Module,
    opt,
    gen: torch.Generator,
    history: list,
    best,
    best_epoch: int,
    best_state: dict,
    since_best: int,
    late: dict,
) -> None:
    """Write ``last.pt`` atomically (a kill mid-write never leaves a broken resume point)."""
    state = {
        "run_key": run_key,
        "model": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "best": list(best) if best is not None else None,
        "best_epoch": best_epoch,
        "best_state": best_state,
        "since_best": since_best,
        "late": late,
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def _resume(path: Path, run_key: dict, model: nn.Module, opt, gen: torch.Generator):
    """Load ``last.pt`` into model, optimizer and generators if it belongs to this run."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt resume point is not worth a crash: start over
        warnings.warn(f"ignoring unreadable {path} ({err}); training from scratch", stacklevel=2)
        return None
    saved = state.get("run_key") or {}
    if saved != run_key:
        changed = sorted(k for k in set(saved) | set(run_key) if saved.get(k) != run_key.get(k))
        print(f"{path} was saved by another run ({', '.join(changed)} changed); training from scratch", file=sys.stderr)
        return None
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    best = tuple(state["best"]) if state["best"] is not None else None
    late = state.get("late") or {"accuracy": None, "epoch": 0, "state": {}, "since": 0}
    return state["history"], best, state["best_epoch"], state["best_state"], state["since_best"], late


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None) -> dict:
    """Load a :func:`fit` checkpoint with ``weights_only=True``; load it into ``model`` if given.

    Returns the checkpoint dict (``state_dict``, ``epoch``, ``val_accuracy``, ``val_loss``,
    ``classes``, ``history``).
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if model is not None:
        model.load_state_dict(ckpt["state_dict"])
    return ckpt


# --------------------------------------------------------------------------------------------
# predict


@dataclass
class Predictions:
    """Bag-level outputs of :func:`predict`.

    Attributes
    ----------
    bag_ids : list of str (n_bags)
    scores : ndarray (n_bags, C)
        Genre probabilities: a softmax, or for MATT each genre's probability under its own
        query (rows need not sum to one).
    labels : ndarray (n_bags,)
        The dataset's bag labels (class indices).
    attention : list of ndarray
        Per bag, a 1-D array over its instances (in membership order): the attention of the
        predicted genre's query for MATT, the pooling's weights otherwise.
    attention_all : list of ndarray (C, n) or None
        MATT only, when requested: one distribution per genre query.
    classes : list of str
    """

    bag_ids: list[str]
    scores: np.ndarray
    labels: np.ndarray
    attention: list[np.ndarray]
    attention_all: list[np.ndarray] | None
    classes: list[str]

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class index per bag, (n_bags,)."""
        return self.scores.argmax(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """Scores as a DataFrame (index ``bag_id``, one column per genre).

        For bags of one (``bag_id = str(track_id)``), ``frame.set_axis(frame.index.astype(int))``
        gives the track-indexed probabilities that :func:`mattlib.models.mil.late_fusion` accepts.
        """
        return pd.DataFrame(self.scores, index=pd.Index(self.bag_ids, name="bag_id"), columns=self.classes)


def predict(
    model: nn.Module,
    data: BagDataset,
    *,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    all_attention: bool = False,
    amp: bool = True,
    encode_chunk: int | None = None,
) -> Predictions:
    """Score every bag of ``data`` (model in eval mode, no labels passed).

    Parameters
    ----------
    model : nn.Module
        As for :func:`fit`.
    data : BagDataset
    batch_size : int, default 32
    device : 'auto' or a device
    all_attention : bool, default False
        Also keep MATT's (C, n) attention per bag.
    amp : bool, default True
        bf16 autocast on CUDA.
    encode_chunk : int, optional
        Score one whole bag at a time, encoding at most this many instances at once and pooling
        all of them (the same prediction as in one piece; bounded memory on large albums).

    Returns
    -------
    Predictions
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    log_probs = getattr(getattr(model, "pooling", None), "inference_log_probs", False)
    ids: list[str] = []
    scores, labels = [], []
    att_pred: list[np.ndarray] = []
    att_all: list[np.ndarray] = []
    with torch.no_grad():
        for batch in _loader(data, batch_size=1 if encode_chunk else batch_size, shuffle=False, device=dev):
            batch = batch.to(dev)
            with _autocast(dev, amp):
                logits, att = model(batch.instances, batch.mask, **_chunk_kwargs(encode_chunk))
            probs = logits.float().exp() if log_probs else torch.softmax(logits.float(), dim=1)
            pred = probs.argmax(1)
            att = att.float()
            sizes = batch.mask.sum(1).tolist()
            for b, n in enumerate(sizes):
                if att.dim() == 3:
                    att_pred.append(att[b, pred[b], :n].cpu().numpy())
                    if all_attention:
                        att_all.append(att[b, :, :n].cpu().numpy())
                else:
                    att_pred.append(att[b, :n].cpu().numpy())
            ids.extend(batch.bag_ids)
            scores.append(probs.cpu().numpy())
            labels.append(batch.labels.cpu().numpy())
    return Predictions(
        bag_ids=ids,
        scores=np.concatenate(scores),
        labels=np.concatenate(labels),
        attention=att_pred,
        attention_all=att_all if (all_attention and att_all) else None,
        classes=list(data.classes),
    )
