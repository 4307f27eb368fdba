"""Album–artist bags, as in the MATT paper.

A *bag* is a group of tracks (*instances*) that share one genre label. Following the paper,
tracks are grouped by ``(album id, artist id)``. For the training split the key also carries the
track's top genre (the authors' scheme), so a training bag never mixes labels. Validation and
test bags are keyed by ``(album, artist)`` only -- model selection sees bags built exactly like
the test's -- so such a bag may mix genres and every track keeps its own label for scoring.

Bags are plain data: a *membership* table with one row per track, which pandas code reads
directly and :mod:`mattlib.training.bags` turns into padded tensors with a mask.

Membership columns
------------------
``bag_id`` (str), ``track_id`` (int), ``split`` (training / validation / test), ``genre`` (the
track's top genre), ``bag_genre`` (the bag's label: ``genre`` for training bags, the
majority genre of a validation or test bag), ``album_id``, ``artist_id`` (int, -1 when unknown),
``bag_size`` (int). Rows of one bag are contiguous, ordered by track id.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mattlib.errors import MattError

__all__ = [
    "NO_ALBUM_POLICIES",
    "MEMBERSHIP_COLUMNS",
    "make_bags",
    "singleton_ids",
    "singletons",
    "tracks_above_cap",
    "bag_table",
    "bag_scopes",
    "train_counts",
    "audit_bags",
    "LeakageError",
    "assert_no_leakage",
    "leakage",
    "warn_unlabelled",
]

#: How to treat tracks with no album (album id -1 or missing).
NO_ALBUM_POLICIES = ("singleton", "artist", "drop")
MEMBERSHIP_COLUMNS = [
    "bag_id",
    "track_id",
    "split",
    "genre",
    "bag_genre",
    "album_id",
    "artist_id",
    "bag_size",
]
_PURE_SPLITS = ("training",)  # label-pure bags; validation and test bags are built alike


class LeakageError(MattError, ValueError):
    """A bag or an artist appears in more than one split."""


def _flat_tracks(tracks: pd.DataFrame) -> pd.DataFrame:
    """The columns bags need, from FMA's 2-level tracks table or an already flat table."""
    if isinstance(tracks.columns, pd.MultiIndex):
        flat = pd.DataFrame(
            {
                "track_id": tracks.index.astype(np.int64),
                "album_id": tracks[("album", "id")].to_numpy(),
                "artist_id": tracks[("artist", "id")].to_numpy(),
                "split": tracks[("set", "split")].astype("object").to_numpy(),
                "genre": tracks[("track", "genre_top")].astype("object").to_numpy(),
            }
        )
    else:
        needed = ["album_id", "artist_id", "split", "genre"]
        missing = [c for c in needed if c not in tracks.columns]
        if missing:
            raise ValueError(
                f"flat tracks table lacks column(s) {missing}; give FMA's tracks table "
                f"(mattlib.data.fma.load_tracks) or columns track_id, {', '.join(needed)}"
            )
        flat = tracks.reset_index() if "track_id" not in tracks.columns else tracks.copy()
        flat = flat[["track_id", *needed]].copy()
    flat["album_id"] = pd.to_numeric(flat["album_id"], errors="coerce").fillna(-1).astype(np.int64)
    flat["artist_id"] = pd.to_numeric(flat["artist_id"], errors="coerce").fillna(-1).astype(np.int64)
    return flat


def make_bags(
    tracks: pd.DataFrame,
    *,
    min_size: int = 1,
    max_size: int | None = None,
    no_album: str = "singleton",
    splits: tuple[str, ...] = ("training", "validation", "test"),
) -> pd.DataFrame:
    """Group tracks into album–artist bags.

    Parameters
    ----------
    tracks : pandas.DataFrame
        FMA tracks table (:func:`mattlib.data.fma.load_tracks`, possibly restricted to a subset), or
        a flat table with ``track_id, album_id, artist_id, split, genre``.
    min_size : int
        Bags with fewer tracks are dropped (1 keeps every bag).
    max_size : int or None
        A **training** bag with more tracks is split into ``ceil(n / max_size)`` chunks of
        near-equal size (by track id), each its own bag (no track is dropped; this bounds the
        memory of a training step). Validation and test bags always stay whole: a model
        predicts an album from all of its tracks. ``None`` keeps every bag whole.
    no_album : {"singleton", "artist", "drop"}
        Tracks with album id -1 or missing: one bag per track (default), one bag per artist,
        or dropped.
    splits : tuple of str
        Splits to keep.

    Returns
    -------
    pandas.DataFrame
        The membership table (columns :data:`MEMBERSHIP_COLUMNS`), one row per track.
        Tracks without a top genre or a split are dropped (their count is in
        ``result.attrs["dropped_unlabelled"]``).
    """
    if no_album not in NO_ALBUM_POLICIES:
        raise ValueError(f"no_album={no_album!r}; valid: {', '.join(NO_ALBUM_POLICIES)}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
    if max_size is not None and max_size < min_size:
        raise ValueError(f"max_size ({max_size}) < min_size ({min_size})")

    flat = _flat_tracks(tracks)
    labelled = flat["genre"].notna() & flat["split"].isin(splits)
    dropped = int((~labelled).sum())
    flat = flat[labelled].sort_values("track_id", kind="stable").reset_index(drop=True)

    no_album_mask = flat["album_id"] < 0
    if no_album == "drop":
        flat = flat[~no_album_mask].reset_index(drop=True)
        no_album_mask = flat["album_id"] < 0

    pure = flat["split"].isin(_PURE_SPLITS)
    key = "a" + flat["album_id"].astype(str) + "-r" + flat["artist_id"].astype(str)
    key = key.where(~pure, key + "-" + flat["genre"].astype(str))
    if no_album == "singleton":
        key = key.where(~no_album_mask, "t" + flat["track_id"].astype(str))
    elif no_album == "artist":
        artist_key = "r" + flat["artist_id"].astype(str)
        artist_key = artist_key.where(~pure, artist_key + "-" + flat["genre"].astype(str))
        key = key.where(~no_album_mask, artist_key)
    # The split is part of the key: a bag never spans splits (the audit checks albums/artists).
    flat["bag_id"] = flat["split"].str[:2] + ":" + key

    if max_size is not None:
        position = flat.groupby("bag_id", sort=False).cumcount().to_numpy()
        size = flat.groupby("bag_id", sort=False)["track_id"].transform("size").to_numpy()
        n_chunks = np.ceil(size / max_size).astype(int)
        chunk = (position * n_chunks) // size  # near-equal chunks, in track-id order
        chunked = (n_chunks > 1) & (flat["split"] == "training").to_numpy()
        flat.loc[chunked, "bag_id"] = (
            flat.loc[chunked, "bag_id"] + "#" + pd.Series(chunk[chunked], index=flat.index[chunked]).astype(str)
        )

    flat["bag_size"] = flat.groupby("bag_id", sort=False)["track_id"].transform("size")
    flat = flat[flat["bag_size"] >= min_size]
    flat["bag_genre"] = _majority_genre(flat)
    membership = flat.sort_values(["bag_id", "track_id"], kind="stable").reset_index(drop=True)
    membership = membership[MEMBERSHIP_COLUMNS]
    membership.attrs["dropped_unlabelled"] = dropped
    return membership


def _majority_genre(membership: pd.DataFrame) -> pd.Series:
    """Per row, the most frequent genre of its bag (ties: alphabetical first)."""
    counts = membership.groupby(["bag_id", "genre"], sort=True).size().rename("n").reset_index()
    counts = counts.sort_values(["bag_id", "n", "genre"], ascending=[True, False, True])
    majority = counts.drop_duplicates("bag_id").set_index("bag_id")["genre"]
    return membership["bag_id"].map(majority)


def singleton_ids(track_ids, split: str | pd.Series = "test") -> pd.Series:
    """Bag ids of tracks as bags of one: ``"<first 2 letters of split>:t<track_id>"``."""
    tracks = pd.Series(track_ids).reset_index(drop=True)
    prefix = split.reset_index(drop=True).str[:2] if isinstance(split, pd.Series) else split[:2]
    return prefix + ":t" + tracks.astype(str)


def singletons(membership: pd.DataFrame) -> pd.DataFrame:
    """The same tracks as bags of one (the paper's case study: test single segments)."""
    single = membership.copy()
    single["bag_id"] = singleton_ids(single["track_id"], single["split"]).to_numpy()
    single["bag_genre"] = single["genre"]
    single["bag_size"] = 1
    return single.sort_values(["bag_id"], kind="stable").reset_index(drop=True)


def tracks_above_cap(membership: pd.DataFrame, *, max_size: int) -> pd.DataFrame:
    """Per split: bags with more than ``max_size`` tracks and the tracks they hold.

    What a cap would touch (training bags above it are chunked by :func:`make_bags`; a capped
    model that kept only the first ``max_size`` tracks would lose ``tracks_beyond_cap``).

    Returns
    -------
    DataFrame indexed by split: ``bags_above``, ``tracks_in_them``, ``tracks_beyond_cap``,
    ``share_of_tracks`` (tracks in bags above the cap / all tracks of the split).
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    table = bag_table(membership)
    above = table["size"] > max_size
    grouped = table.assign(above=above, inside=table["size"].where(above, 0),
                           beyond=(table["size"] - max_size).clip(lower=0)).groupby("split")
    out = pd.DataFrame({
        "bags_above": grouped["above"].sum().astype(int),
        "tracks_in_them": grouped["inside"].sum().astype(int),
        "tracks_beyond_cap": grouped["beyond"].sum().astype(int),
    })
    out["share_of_tracks"] = out["tracks_in_them"] / grouped["size"].sum()
    return out


def bag_table(membership: pd.DataFrame) -> pd.DataFrame:
    """One row per bag: ``split, bag_genre, size, album_id, artist_id, purity, n_genres``.

    ``purity`` is the fraction of the bag's tracks whose genre is the bag's label.
    """
    agree = membership["genre"] == membership["bag_genre"]
    grouped = membership.assign(agree=agree).groupby("bag_id", sort=False)
    return pd.DataFrame(
        {
            "split": grouped["split"].first(),
            "bag_genre": grouped["bag_genre"].first(),
            "size": grouped.size(),
            "album_id": grouped["album_id"].first(),
            "artist_id": grouped["artist_id"].first(),
            "purity": grouped["agree"].mean(),
            "n_genres": grouped["genre"].nunique(),
        }
    )


def bag_scopes(membership: pd.DataFrame) -> dict[str, np.ndarray]:
    """``bag_id -> track ids`` (OpenNRE's "scope"), in membership order."""
    return {
        bag_id: group["track_id"].to_numpy()
        for bag_id, group in membership.groupby("bag_id", sort=False)
    }


def train_counts(membership: pd.DataFrame, *, classes: list[str] | None = None) -> pd.Series:
    """Training tracks per genre, largest first (zeros for ``classes`` absent from training)."""
    counts = membership.loc[membership["split"] == "training", "genre"].value_counts()
    if classes is not None:
        counts = counts.reindex(classes, fill_value=0).sort_values(ascending=False, kind="stable")
    return counts.astype(int)


def audit_bags(membership: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Audit bags per split: counts, size distribution, label purity, and leakage.

    Returns
    -------
    dict of pandas.DataFrame
        ``"summary"``: per split, ``n_tracks, n_bags, size_min, size_median, size_mean,
        size_max, singleton_bags, pure_bags, mean_purity``;
        ``"sizes"``: bag-size histogram (rows: size, columns: split);
        ``"crossing_albums"``: (album, artist) keys found in more than one split;
        ``"crossing_artists"``: artists found in more than one split.
        On FMA's artist-disjoint split both crossing tables must be empty.
    """
    bags = bag_table(membership)
    rows = []
    for split, group in bags.groupby("split", sort=False):
        rows.append(
            {
                "split": split,
                "n_tracks": int(group["size"].sum()),
                "n_bags": len(group),
                "size_min": int(group["size"].min()),
                "size_median": float(group["size"].median()),
                "size_mean": float(group["size"].mean()),
                "size_max": int(group["size"].max()),
                "singleton_bags": int((group["size"] == 1).sum()),
                "pure_bags": float((group["purity"] == 1.0).mean()),
                "mean_purity": float(group["purity"].mean()),
            }
        )
    order = {s: i for i, s in enumerate(("training", "validation", "test"))}
    summary = pd.DataFrame(rows).sort_values("split", key=lambda s: s.map(order)).set_index("split")
    sizes = bags.groupby(["size", "split"]).size().unstack(fill_value=0)

    known_album = membership[membership["album_id"] >= 0]
    album_splits = known_album.groupby(["album_id", "artist_id"])["split"].agg(
        lambda s: sorted(set(s))
    )
    crossing_albums = album_splits[album_splits.map(len) > 1].rename("splits").reset_index()
    known_artist = membership[membership["artist_id"] >= 0]
    artist_splits = known_artist.groupby("artist_id")["split"].agg(lambda s: sorted(set(s)))
    crossing_artists = artist_splits[artist_splits.map(len) > 1].rename("splits").reset_index()
    return {
        "summary": summary,
        "sizes": sizes,
        "crossing_albums": crossing_albums,
        "crossing_artists": crossing_artists,
    }


def leakage(membership: pd.DataFrame) -> str:
    """One line describing the album–artist keys and artists that span splits, with how many
    tracks they hold; empty when the split is clean.

    Examples
    --------
    >>> m = pd.DataFrame({"track_id": [1, 2, 3], "album_id": [7, 7, 8], "artist_id": [5, 5, 6],
    ...                   "split": ["training", "test", "test"], "genre": ["Rock"] * 3,
    ...                   "bag_genre": ["Rock"] * 3, "bag_id": ["a", "b", "c"]})
    >>> leakage(m)
    'album-artist keys in more than one split: 1 (album 7 / artist 5: test, training), holding 2 tracks; artists in more than one split: 1 (artist 5), holding 2 tracks'
    """
    audit = audit_bags(membership)
    parts = []
    albums, artists = audit["crossing_albums"], audit["crossing_artists"]
    if len(albums):
        keys = set(zip(albums["album_id"], albums["artist_id"]))
        held = int(pd.Series(list(zip(membership["album_id"], membership["artist_id"]))).isin(keys).sum())
        shown = "; ".join(
            f"album {a} / artist {r}: {', '.join(sp)}" for a, r, sp in albums.head(3).itertuples(index=False)
        )
        parts.append(
            f"album-artist keys in more than one split: {len(albums)} ({shown}{'; ...' if len(albums) > 3 else ''}), "
            f"holding {held} tracks"
        )
    if len(artists):
        held = int(membership["artist_id"].isin(artists["artist_id"]).sum())
        shown = ", ".join(str(a) for a in artists["artist_id"].head(5))
        parts.append(
            f"artists in more than one split: {len(artists)} (artist {shown}{', ...' if len(artists) > 5 else ''}), "
            f"holding {held} tracks"
        )
    return "; ".join(parts)


def assert_no_leakage(membership: pd.DataFrame, *, where: str = "") -> None:
    """Raise :class:`LeakageError` (one line, with the fix) if an album–artist bag or an artist
    spans splits."""
    found = leakage(membership)
    if found:
        raise LeakageError(
            f"{where + ': ' if where else ''}the split leaks: {found}. Fix the split (every album and artist in "
            "one split), or set allow_leakage: true to run anyway (the report then says so on its first page)"
        )


def warn_unlabelled(membership: pd.DataFrame) -> None:
    """Warn once if :func:`make_bags` dropped tracks without a top genre or split."""
    dropped = membership.attrs.get("dropped_unlabelled", 0)
    if dropped:
        warnings.warn(f"{dropped} track(s) without a top genre or split were left out of the bags")
