"""Bags as torch data: :class:`BagDataset` (membership rows + an instance array), padded
:class:`BagBatch` es (:func:`collate_bags`) and their loader."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["BagBatch", "BagDataset", "bag_loader", "collate_bags"]


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


def bag_loader(
    data: BagDataset, *, batch_size: int, shuffle: bool, generator=None, device=None, num_workers: int = 0
) -> DataLoader:
    """A DataLoader of padded batches (page-locked when ``device`` is CUDA)."""
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate_bags,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device is not None and device.type == "cuda",
    )
