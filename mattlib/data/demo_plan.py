"""The demo's metadata plan: genres with FMA medium's long tail, artist-disjoint splits, albums,
FMA's 52 ``tracks.csv`` columns, a few test albums that mix genres, and the ground-truth manifest.

Shared by the audio demo (:mod:`mattlib.data.demo`) and the features-only variants
(:mod:`mattlib.data.demo_features`); the album styles it draws are :mod:`mattlib.data.demo_synth`'s.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from mattlib.data import fma, planted
from mattlib.data.demo_synth import _album_style

FMA_MEDIUM_TRAINING_COUNTS = fma.FMA_MEDIUM_TRAIN_COUNTS  # the long tail the demo imitates
#: Tracks per split on the real fma_medium (small ∪ medium): 25,000 in all.
FMA_MEDIUM_SPLITS = {"training": 19922, "validation": 2505, "test": 2573}
# FMA-like bag shapes at full size: tracks per album ~ size**-1.7 on 1..25 (mean ~3.4 tracks, as
# FMA medium's ~750 test bags of 2,573 tracks), albums per artist ~ k**-2 on 1..8.
_MEDIUM_ALBUM_SIZES = (np.arange(1, 26), np.arange(1, 26, dtype=float) ** -1.7)
_MEDIUM_ARTIST_ALBUMS = (np.arange(1, 9), np.arange(1, 9, dtype=float) ** -2.0)

# Genres of FMA small (balanced, 8 genres); the demo marks some of their tracks subset=small.
_SMALL_GENRES = (
    "Electronic",
    "Experimental",
    "Folk",
    "Hip-Hop",
    "Instrumental",
    "International",
    "Pop",
    "Rock",
)

#: FMA tracks.csv columns (group, field), in the real file's order.
TRACKS_COLUMNS: list[tuple[str, str]] = (
    [
        ("album", f)
        for f in (
            "comments",
            "date_created",
            "date_released",
            "engineer",
            "favorites",
            "id",
            "information",
            "listens",
            "producer",
            "tags",
            "title",
            "tracks",
            "type",
        )
    ]
    + [
        ("artist", f)
        for f in (
            "active_year_begin",
            "active_year_end",
            "associated_labels",
            "bio",
            "comments",
            "date_created",
            "favorites",
            "id",
            "latitude",
            "location",
            "longitude",
            "members",
            "name",
            "related_projects",
            "tags",
            "website",
            "wikipedia_page",
        )
    ]
    + [("set", "split"), ("set", "subset")]
    + [
        ("track", f)
        for f in (
            "bit_rate",
            "comments",
            "composer",
            "date_created",
            "date_recorded",
            "duration",
            "favorites",
            "genre_top",
            "genres",
            "genres_all",
            "information",
            "interest",
            "language_code",
            "license",
            "listens",
            "lyricist",
            "number",
            "publisher",
            "tags",
            "title",
        )
    ]
)

# Per-split floor: every genre keeps this many tracks in each split.
_MIN_TRAIN, _MIN_VALID, _MIN_TEST = 3, 2, 2
_MIN_PER_GENRE = _MIN_TRAIN + _MIN_VALID + _MIN_TEST
# Where the demo is large enough (2 x 16 x 13 tracks), every genre gets this many test tracks, in
# albums of 1-5 tracks: the 4 rarest genres (the "<100" set) then span at least ~10 test albums,
# the fewest on which the report gives an interval (mattlib.evaluation.uncertainty.MIN_ALBUMS).
_TAIL_TEST = 8
_TEST_ALBUM_SIZES = (np.arange(1, 6), np.array([3, 4, 4, 2, 1], float))


def _genre_table() -> pd.DataFrame:
    with resources.files("mattlib").joinpath("data", "genres.csv").open("r") as f:
        return pd.read_csv(f, index_col=0)


def _test_floor(n_tracks: int) -> int:
    """Test tracks every genre keeps: :data:`_TAIL_TEST` on a demo large enough, else the floor."""
    names = len(FMA_MEDIUM_TRAINING_COUNTS)
    return _TAIL_TEST if n_tracks >= 2 * names * (_MIN_TRAIN + _MIN_VALID + _TAIL_TEST) else _MIN_TEST


def _genre_totals(n_tracks: int) -> dict[str, int]:
    """Tracks per genre: the floor plus a largest-remainder share of the rest by FMA's counts."""
    names = list(FMA_MEDIUM_TRAINING_COUNTS)
    floor = _MIN_TRAIN + _MIN_VALID + _test_floor(n_tracks)
    weights = np.array([FMA_MEDIUM_TRAINING_COUNTS[g] for g in names], dtype=float)
    share = (n_tracks - floor * len(names)) * weights / weights.sum()
    extra = np.floor(share).astype(int)
    left = n_tracks - floor * len(names) - extra.sum()
    # Ties broken by the real order, so the allocation stays monotone in FMA's counts.
    order = sorted(range(len(names)), key=lambda i: (-(share[i] - extra[i]), i))
    extra[order[:left]] += 1
    return {g: floor + int(e) for g, e in zip(names, extra)}


def _split_counts(total: int, test_floor: int = _MIN_TEST) -> dict[str, int]:
    """~80/10/10 split of one genre's tracks, monotone in ``total``, with the per-split floors
    (``test_floor`` test tracks at least)."""
    training = max(_MIN_TRAIN, min(total - _MIN_VALID - test_floor, round(0.8 * total)))
    rest = total - training
    test = min(rest - _MIN_VALID, max(test_floor, rest - rest // 2))
    return {"training": training, "validation": rest - test, "test": test}


def _partition(total: int, rng: np.random.Generator, *, sizes: np.ndarray, weights: np.ndarray) -> list[int]:
    """Split ``total`` into parts drawn from ``sizes`` (the last part takes what is left)."""
    parts = []
    while total > 0:
        size = int(min(total, rng.choice(sizes, p=weights / weights.sum())))
        parts.append(size)
        total -= size
    return parts


def _words(rng: np.random.Generator, n: int) -> str:
    syllables = [
        "ka",
        "lo",
        "mi",
        "ra",
        "ne",
        "to",
        "su",
        "vel",
        "dar",
        "an",
        "or",
        "is",
        "bel",
        "mo",
        "ri",
        "za",
        "fen",
        "tu",
        "lu",
        "gor",
        "sha",
        "pe",
        "qui",
        "ton",
    ]
    words = []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        words.append("".join(rng.choice(syllables, size=k)).capitalize())
    return " ".join(words)


def _timestamp(base: np.datetime64, seconds: int) -> str:
    return str(base + np.timedelta64(int(seconds), "s")).replace("T", " ")


def _plan(
    *,
    n_tracks: int,
    seed: int,
    counts: dict[str, dict[str, int]] | None = None,
    album_sizes: tuple[np.ndarray, np.ndarray] | None = None,
    artist_albums: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """Draw genres, splits, artists, albums, tracks and each album's style.

    ``counts`` (genre -> split -> tracks) replaces the scaled-down demo counts; ``album_sizes``
    and ``artist_albums`` are (values, weights) of tracks per album and albums per artist.

    Returns
    -------
    tracks : DataFrame, shape (n_tracks, 52)
        FMA ``tracks.csv`` content, index ``track_id``.
    manifest : DataFrame, shape (n_tracks, n_fields)
        Generator ground truth per track.
    tasks : list of dict, length n_tracks
        One audio rendering task per track (album style, fault, output file).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFA]))
    genres = _genre_table()
    top = genres[genres["parent"] == 0]
    genre_id = {title: int(gid) for gid, title in top["title"].items()}
    missing = [g for g in FMA_MEDIUM_TRAINING_COUNTS if g not in genre_id]
    if missing:  # pragma: no cover - the packaged genres.csv is FMA's official file
        raise RuntimeError(f"packaged genres.csv lacks top-level genres {missing}")
    subgenres = {
        g: [int(i) for i in genres.index[genres["top_level"] == genre_id[g]]] for g in FMA_MEDIUM_TRAINING_COUNTS
    }

    def ancestors(gid: int) -> list[int]:
        chain = [gid]
        while int(genres.at[chain[-1], "parent"]) != 0:
            chain.append(int(genres.at[chain[-1], "parent"]))
        return chain

    # 1. Albums (genre, split, size) grouped into artists; artists never cross splits.
    album_sizes, album_weights = album_sizes or (np.arange(1, 9), np.array([2, 3, 4, 4, 3, 2, 2, 1], float))
    artist_sizes, artist_weights = artist_albums or (np.arange(1, 5), np.array([3, 3, 2, 1], float))
    demo_sizes = counts is None
    if counts is None:
        floor = _test_floor(n_tracks)
        counts = {genre: _split_counts(total, floor) for genre, total in _genre_totals(n_tracks).items()}
    albums: list[dict] = []
    n_artists = 0
    for genre, per_split in counts.items():
        for split, count in per_split.items():
            if demo_sizes and split == "test":  # more, smaller test albums: intervals need albums
                sizes = _partition(count, rng, sizes=_TEST_ALBUM_SIZES[0], weights=_TEST_ALBUM_SIZES[1])
            else:
                sizes = _partition(count, rng, sizes=album_sizes, weights=album_weights)
            per_artist = _partition(len(sizes), rng, sizes=artist_sizes, weights=artist_weights)
            start = 0
            for k in per_artist:
                for size in sizes[start : start + k]:
                    albums.append({"genre": genre, "split": split, "size": size, "artist": n_artists})
                start += k
                n_artists += 1

    # 2. Ids: albums in a shuffled order, contiguous track ids within an album, random gaps.
    order = rng.permutation(len(albums))
    artist_ids = np.cumsum(rng.integers(1, 4, size=n_artists))
    artist_ids = artist_ids[rng.permutation(n_artists)]
    album_id = 0
    track_id = 1
    base = np.datetime64("2008-11-26T00:00:00")
    licenses = [
        "Attribution-NonCommercial-ShareAlike 3.0 International",
        "Attribution-Noncommercial-No Derivative Works 2.0 UK: England",
        "Attribution-Noncommercial-Share Alike 3.0 United States",
        "Attribution-NonCommercial-NoDerivatives (aka Music Sharing) 3.0 International",
        "Attribution-Noncommercial-No Derivative Works 3.0 United States",
        "Attribution",
    ]
    artists: dict[int, dict] = {}
    rows: list[dict] = []
    tasks: list[dict] = []
    names = list(FMA_MEDIUM_TRAINING_COUNTS)
    for a in order:
        album = albums[a]
        genre = album["genre"]
        album_id += int(rng.integers(1, 4))
        track_id += int(rng.integers(0, 3)) if rows else 0  # FMA's first track is 2
        if album["artist"] not in artists:
            created = int(rng.integers(0, 8 * 365 * 86400))
            artists[album["artist"]] = {
                ("artist", "id"): int(artist_ids[album["artist"]]),
                ("artist", "name"): _words(rng, int(rng.integers(1, 3))),
                ("artist", "date_created"): _timestamp(base, created),
                ("artist", "comments"): int(rng.poisson(0.5)),
                ("artist", "favorites"): int(rng.poisson(5)),
                ("artist", "tags"): "[]",
                ("artist", "bio"): f"<p>{_words(rng, 5)}</p>" if rng.random() < 0.7 else None,
                ("artist", "location"): _words(rng, 2) if rng.random() < 0.5 else None,
                ("artist", "active_year_begin"): (
                    f"{int(rng.integers(1990, 2012))}-01-01 00:00:00" if rng.random() < 0.4 else None
                ),
                ("artist", "_created"): created,
            }
        artist = artists[album["artist"]]
        album_created = artist[("artist", "_created")] + int(rng.integers(0, 365 * 86400))
        sub = int(rng.choice(subgenres[genre])) if rng.random() < 0.6 else genre_id[genre]
        size = album["size"]
        album_row = {
            ("album", "id"): album_id,
            ("album", "title"): _words(rng, int(rng.integers(1, 4))),
            ("album", "type"): "Single Tracks"
            if size == 1
            else str(rng.choice(["Album", "Album", "Album", "Live Performance"])),
            ("album", "tracks"): size + int(rng.integers(0, 3)),
            ("album", "date_created"): _timestamp(base, album_created),
            ("album", "date_released"): _timestamp(
                base, album_created - album_created % 86400 + 86400 * int(rng.integers(1, 60))
            ),
            ("album", "comments"): int(rng.poisson(0.3)),
            ("album", "favorites"): int(rng.poisson(2)),
            ("album", "listens"): int(rng.integers(100, 20000)),
            ("album", "tags"): "[]",
            ("album", "information"): "<p></p>",
        }
        style, crossover, weight, borrowed = _album_style(genre, names, rng)
        license_ = str(rng.choice(licenses))
        for number in range(1, size + 1):
            track_id += 1
            track_created = album_created + int(rng.integers(60, 3600))
            rows.append(
                {
                    **album_row,
                    **{k: v for k, v in artist.items() if k[1] != "_created"},
                    ("set", "split"): album["split"],
                    ("set", "subset"): "medium",
                    ("track", "_id"): track_id,
                    ("track", "bit_rate"): int(
                        rng.choice([128000, 160000, 192000, 256000, 320000], p=[0.1, 0.15, 0.1, 0.6, 0.05])
                    ),
                    ("track", "comments"): 0,
                    ("track", "date_created"): _timestamp(base, track_created),
                    ("track", "duration"): int(rng.integers(60, 420)),
                    ("track", "favorites"): int(rng.poisson(1)),
                    ("track", "genre_top"): genre,
                    ("track", "genres"): f"[{sub}]",
                    ("track", "genres_all"): str(sorted(ancestors(sub))),
                    ("track", "interest"): int(rng.integers(50, 5000)),
                    ("track", "language_code"): "en" if rng.random() < 0.5 else None,
                    ("track", "license"): license_,
                    ("track", "listens"): int(rng.integers(20, 3000)),
                    ("track", "number"): number,
                    ("track", "tags"): "[]",
                    ("track", "title"): _words(rng, int(rng.integers(1, 4))),
                }
            )
            tasks.append({"track_id": track_id, "album_id": album_id, "style": style, "fault": ""})
            rows[-1][("manifest", "crossover")] = crossover
            rows[-1][("manifest", "weight")] = round(weight, 4)
            rows[-1][("manifest", "borrowed")] = borrowed

    # 2b. A few test albums that mix genres: each takes in one guest track of another genre.
    mixed = _mix_test_albums(rows, seed=seed)
    for row, task in zip(rows, tasks):
        task["album_id"] = row[("album", "id")]

    frame = pd.DataFrame(rows)
    ids = frame.pop(("track", "_id")).to_numpy()

    # 3. Subset small: a balanced share of FMA small's 8 genres, per split.
    subset = frame[("set", "subset")].to_numpy(dtype=object)
    split_of = frame[("set", "split")].to_numpy()
    genre_of = frame[("track", "genre_top")].to_numpy()
    for split in ("training", "validation", "test"):
        k = max(1, min(int(np.sum((genre_of == g) & (split_of == split))) for g in _SMALL_GENRES) // 2)
        for g in _SMALL_GENRES:
            idx = np.flatnonzero((genre_of == g) & (split_of == split))
            subset[rng.choice(idx, size=k, replace=False)] = "small"
    frame[("set", "subset")] = subset

    # 4. Faulty clips: training tracks of the two largest genres, in albums of >= 2 tracks.
    album_of = frame[("album", "id")].to_numpy()
    album_size = pd.Series(album_of).map(pd.Series(album_of).value_counts()).to_numpy()
    faults = np.full(len(frame), "", dtype=object)
    for kind, genre in (("empty", "Rock"), ("truncated", "Electronic"), ("short", "Rock")):
        ok = np.flatnonzero((genre_of == genre) & (split_of == "training") & (album_size >= 2) & (faults == ""))
        faults[int(rng.choice(ok))] = kind
    for task, fault in zip(tasks, faults):
        task["fault"] = fault

    # 5. tracks.csv in FMA's exact columns; the manifest from the same rows.
    tracks = pd.DataFrame({c: frame[c] if c in frame else None for c in TRACKS_COLUMNS})
    tracks.columns = pd.MultiIndex.from_tuples(TRACKS_COLUMNS)
    tracks.index = pd.Index(ids, name="track_id")
    manifest = pd.DataFrame(
        {
            "track_id": ids,
            "genre": genre_of,
            "genre_id": [genre_id[g] for g in genre_of],
            "album_id": album_of,
            "artist_id": frame[("artist", "id")].to_numpy(),
            "split": split_of,
            "subset": subset,
            "fault": faults,
            "crossover_genre": frame[("manifest", "crossover")].to_numpy(),
            "crossover_weight": frame[("manifest", "weight")].to_numpy(),
            "borrowed": frame[("manifest", "borrowed")].to_numpy(),
        }
    )
    counts = manifest.groupby(["album_id", "genre"]).size().rename("n").reset_index()
    album_genre = counts.sort_values(["album_id", "n"], ascending=[True, False]).drop_duplicates("album_id")
    album_genre = album_genre.set_index("album_id")["genre"]  # the majority genre (strict in mixed albums)
    manifest["album_genre"] = manifest["album_id"].map(album_genre)
    manifest["mixed_album"] = manifest["album_id"].isin(mixed)
    manifest["marked"] = planted.draw_marked(manifest, seed=seed)
    return tracks, manifest, tasks


def _mix_test_albums(rows: list[dict], *, seed: int) -> list[int]:
    """Move one track of another genre into 2-4 test albums (in place); the albums' ids.

    A host is a test album of >= 2 tracks (so its genre stays a strict majority); its guest is a
    test track of another genre taken from another album, which takes the host's album and artist
    fields. Genre counts per split are unchanged. Fewer hosts are mixed when fewer exist.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x313ED]))
    by_album: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if row[("set", "split")] == "test":
            by_album.setdefault(row[("album", "id")], []).append(i)
    albums = list(by_album)
    hosts = [a for a in albums if len(by_album[a]) >= 2]
    n_mixed = int(rng.integers(2, 5))
    chosen: list[int] = []
    used: set[int] = set()
    for host in rng.permutation(np.array(hosts, dtype=np.int64)).tolist():
        if len(chosen) == n_mixed:
            break
        if host in used:
            continue
        genre = rows[by_album[host][0]][("track", "genre_top")]
        donors = [
            a for a in albums if a not in used and a != host and rows[by_album[a][0]][("track", "genre_top")] != genre
        ]
        if not donors:
            continue
        donor = int(rng.choice(donors))
        guest = by_album[donor][int(rng.integers(len(by_album[donor])))]
        template = rows[by_album[host][0]]
        for key, value in template.items():
            if key[0] in ("album", "artist"):
                rows[guest][key] = value
        rows[guest][("track", "number")] = len(by_album[host]) + 1
        rows[guest][("album", "tracks")] = max(int(template[("album", "tracks")]), len(by_album[host]) + 1)
        for i in by_album[host]:
            rows[i][("album", "tracks")] = rows[guest][("album", "tracks")]
        left = [i for i in by_album[donor] if i != guest]
        for number, i in enumerate(left, start=1):
            rows[i][("track", "number")] = number
        by_album[host].append(guest)
        by_album[donor] = left
        used.update((host, donor))
        chosen.append(int(host))
    return chosen


def _medium_counts() -> dict[str, dict[str, int]]:
    """genre -> split -> tracks: FMA medium's training counts; validation and test split sizes
    shared out in proportion to training (largest remainder), at least 2 tracks each."""
    names = list(FMA_MEDIUM_TRAINING_COUNTS)
    train = np.array([FMA_MEDIUM_TRAINING_COUNTS[g] for g in names], dtype=float)
    counts = {g: {"training": int(n)} for g, n in zip(names, train)}
    for split in ("validation", "test"):
        floor = _MIN_VALID if split == "validation" else _MIN_TEST
        share = floor + (FMA_MEDIUM_SPLITS[split] - floor * len(names)) * train / train.sum()
        part = np.floor(share).astype(int)
        order = np.argsort(-(share - part), kind="stable")
        part[order[: FMA_MEDIUM_SPLITS[split] - part.sum()]] += 1
        for g, n in zip(names, part):
            counts[g][split] = int(n)
    return counts
