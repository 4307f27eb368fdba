"""Features-only demos: FMA's 518-column ``features.csv`` drawn per genre, album and track, no audio.

Two generators share the column layout and writer (:func:`mattlib.data.fma.write_features`):

* :func:`generate_fma_medium_features`: FMA medium's full shape (25,000 tracks), for benchmarks of
  the feature-based study at scale;
* :func:`generate_demo_features`: the audio demo's plan (600 tracks by default) with one planted
  effect (:mod:`mattlib.data.planted`), in about a second, for benchmarks that replicate a study
  many times.

A genre's signal is a random centre per column, scaled per feature group (``_MEDIUM_SIGNAL``: the
MFCC and contrast groups carry most of it, as on FMA, chroma and tonnetz the least), in units of
the per-track noise; each column then gets an FMA-like location and scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.data import fma, planted
from mattlib.data.demo_files import _check_int, _readme, _write_root
from mattlib.data.demo_plan import (
    _MEDIUM_ALBUM_SIZES,
    _MEDIUM_ARTIST_ALBUMS,
    _MIN_PER_GENRE,
    FMA_MEDIUM_SPLITS,
    FMA_MEDIUM_TRAINING_COUNTS,
    _medium_counts,
    _plan,
)

__all__ = ["generate_demo_features", "generate_fma_medium_features"]

# Genre signal per feature group, in units of the track noise.
_MEDIUM_SIGNAL = {
    "chroma_cens": 0.05,
    "chroma_cqt": 0.05,
    "chroma_stft": 0.05,
    "mfcc": 0.14,
    "rmse": 0.3,
    "spectral_bandwidth": 0.3,
    "spectral_centroid": 0.3,
    "spectral_contrast": 0.14,
    "spectral_rolloff": 0.3,
    "tonnetz": 0.06,
    "zcr": 0.3,
}
_MEDIUM_ALBUM_SIGMA = 0.8  # an album's own offset, relative to its genre's signal
_MEDIUM_GENERATOR_VERSION = 2
# Planted demo: the genre signal's scale per effect (multiplies _MEDIUM_SIGNAL), chosen by
# measurement so that an MLP on single tracks of a 600-track demo lands at 30-60 % test accuracy
# (seeds 0-3: null 49 %, bag 52 %, attention 44 %; see generate_demo_features).
_PLANTED_SIGNAL = {"null": 1.3, "bag": 6.0, "attention": 4.0}
# bag: a track's signal is (1 - w) of its genre's centre and w of a random other genre's,
# w ~ U(0, this): beyond w = 1/2 a single track looks like the other genre; an album's mean does not.
_TRACK_PULL_MAX = 1.0
_PLANTED_GENERATOR_VERSION = 1


def generate_fma_medium_features(out: str | Path, *, seed: int = 0) -> Path:
    """FMA medium's shape without audio: ``tracks.csv``, ``genres.csv`` and ``features.csv``.

    25,000 tracks with FMA medium's training counts per genre and split sizes (19,922 / 2,505 /
    2,573; validation and test counts per genre in proportion to training, at least 2 each),
    artist-disjoint splits, albums of 1..25 tracks (mean ~3.4) and artists of 1..8 albums, and a
    518-column ``features.csv`` in FMA's layout (3 header rows). A track's features are its
    genre's centre, pulled towards the album's crossover genre, plus an album offset and track
    noise, so classifiers learn something and bags help. For benchmarks of the feature-based
    study at full size; numbers on it say nothing about music.

    Parameters
    ----------
    out : str or Path
        Data root to create (``fma_metadata/`` only; there is no audio folder).
    seed : int, default 0
        Seed; the same seed gives the same files.

    Returns
    -------
    Path
        The data root ``out``; generation is skipped when ``out`` already holds it.

    Raises
    ------
    FileExistsError
        If ``out`` exists and holds files that are not part of a demo dataset.
    """
    seed = _check_int("seed", seed, low=0)
    settings = {
        "generator_version": _MEDIUM_GENERATOR_VERSION,
        "shape": "fma_medium",
        "audio": False,
        "n_tracks": sum(FMA_MEDIUM_SPLITS.values()),
        "seed": seed,
    }

    def build(partial: Path) -> None:
        tracks, manifest, _ = _plan(
            n_tracks=settings["n_tracks"],
            seed=seed,
            counts=_medium_counts(),
            album_sizes=_MEDIUM_ALBUM_SIZES,
            artist_albums=_MEDIUM_ARTIST_ALBUMS,
        )
        manifest["fault"] = ""  # no audio, no faulty clips
        columns = fma.fma518_columns()
        table = pd.DataFrame(_medium_features(manifest, columns, seed=seed), index=tracks.index, columns=columns)
        _write_tables(partial, tracks, manifest, table, settings)

    return _write_root(out, settings, build)


def generate_demo_features(out: str | Path, *, effect: str, n_tracks: int = 600, seed: int = 0) -> Path:
    """The demo's plan with a planted effect, and its ``features.csv`` instead of audio.

    The same plan as :func:`mattlib.data.demo.generate_demo` with the same ``n_tracks`` and
    ``seed`` (genres with FMA medium's long tail, artist-disjoint splits, album sizes, test
    albums that mix genres, the ``marked`` draw): ``tracks.csv``, ``genres.csv``,
    ``demo_manifest.csv`` (with the effect's roles), the marker, and a 518-column
    ``fma_metadata/features.csv`` in FMA's layout. Per track, in units of the track noise:

    * ``null``: the album's vector, its genre's centre plus one noise draw per album (every
      track of an album has the same features);
    * ``bag``: each track pulled towards its own random other genre, ``(1 - w)`` of its
      genre's centre and ``w`` of the other's, ``w ~ U(0, 1)``, plus the track's own noise;
    * ``attention``: informative tracks their genre's centre plus noise; fillers one
      genre-free centre (the same for every genre) plus noise; a guest track of a mixed album
      carries its own genre.

    Measured (600 tracks, data and training seeds 0-3, MLP 256-128 of
    :func:`mattlib.study.experiment.run_bag_model`, 40 epochs, patience 8; test track accuracy,
    mean over seeds, 68 test tracks each): ``null``: track model 49 %, late fusion = track model
    exactly, MIL − track −1.9 (sd 8.9), MATT − MIL +2.2 (sd 2.8), MATT's weight on the marked
    tracks 0.386 = their uniform share; ``bag``: track 52 %, late − track +15.0, MIL − track
    +19.1, MIL − late +4.1 (sd 10.3), MATT − MIL +2.2 (sd 6.0), weight on marked 0.367 vs 0.386;
    ``attention``: track 44 %, late − track +16.9, MIL − track +37.5, MIL − late +20.6 (sd
    5.7), MATT − MIL +4.4 (sd 1.2), weight on the informative tracks 0.77 vs a uniform 0.39.

    Parameters
    ----------
    out : str or Path
        Data root to create (``fma_metadata/`` only; there is no audio folder).
    effect : {"null", "bag", "attention"}
        The planted effect (:data:`mattlib.data.planted.EFFECTS`).
    n_tracks : int, default 600
        Number of tracks, at least 112.
    seed : int, default 0
        Seed; the same seed gives the same files (and the same plan for every effect).

    Returns
    -------
    Path
        The data root ``out``; generation is skipped when ``out`` already holds it.

    Raises
    ------
    ValueError
        If ``effect`` is not a planted effect or ``n_tracks`` / ``seed`` is out of range.
    FileExistsError
        If ``out`` exists and holds files that are not part of a demo dataset.

    Examples
    --------
    >>> root = generate_demo_features("/tmp/planted-null", effect="null")  # doctest: +SKIP
    >>> pd.read_csv(root / "demo_manifest.csv")["informative"].all()  # doctest: +SKIP
    True
    """
    effect = planted.check_effect(effect)
    n_tracks = _check_int("n_tracks", n_tracks, low=_MIN_PER_GENRE * len(FMA_MEDIUM_TRAINING_COUNTS))
    seed = _check_int("seed", seed, low=0)
    settings = {
        "generator_version": _PLANTED_GENERATOR_VERSION,
        "shape": "demo",
        "audio": False,
        "effect": effect,
        "n_tracks": n_tracks,
        "seed": seed,
    }

    def build(partial: Path) -> None:
        tracks, manifest, _ = _plan(n_tracks=n_tracks, seed=seed)
        manifest["fault"] = ""  # no audio, no faulty clips
        manifest = planted.assign_roles(manifest, effect=effect)
        columns = fma.fma518_columns()
        x = _planted_features(manifest, columns, effect=effect, seed=seed)
        _write_tables(partial, tracks, manifest, pd.DataFrame(x, index=tracks.index, columns=columns), settings)

    return _write_root(out, settings, build)


def _write_tables(partial: Path, tracks: pd.DataFrame, manifest: pd.DataFrame, table: pd.DataFrame, settings: dict):
    tracks.to_csv(partial / "fma_metadata" / "tracks.csv")
    fma.write_features(partial / "fma_metadata" / "features.csv", table)
    manifest.to_csv(partial / "demo_manifest.csv", index=False)
    (partial / "README.md").write_text(_readme(settings, manifest, audio=False))


def _signal_profile(columns: pd.MultiIndex) -> np.ndarray:
    return np.array([_MEDIUM_SIGNAL[name] for name in columns.get_level_values("feature")])


def _fma_like(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """FMA-like location and scale per column (e.g. a centroid in Hz, a kurtosis near 0)."""
    loc = rng.normal(0.0, 3.0, x.shape[1])
    scale = np.exp(rng.normal(0.0, 1.0, x.shape[1]))
    return (x * scale + loc).astype(np.float32)


def _medium_features(manifest: pd.DataFrame, columns: pd.MultiIndex, *, seed: int) -> np.ndarray:
    """(tracks, 518) float32: genre centre (pulled to the crossover genre) + album offset + noise."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFEA7]))
    strength = _signal_profile(columns)
    genres = list(FMA_MEDIUM_TRAINING_COUNTS)
    centres = rng.standard_normal((len(genres), len(columns))) * strength
    g = manifest["genre"].map({name: i for i, name in enumerate(genres)}).to_numpy()
    other = manifest["crossover_genre"].map({name: i for i, name in enumerate(genres)}).to_numpy()
    w = manifest["crossover_weight"].to_numpy()[:, None]
    _, album = np.unique(manifest["album_id"].to_numpy(), return_inverse=True)
    album_offset = rng.standard_normal((album.max() + 1, len(columns))) * strength * _MEDIUM_ALBUM_SIGMA
    x = (1 - w) * centres[g] + w * centres[other] + album_offset[album]
    x += rng.standard_normal(x.shape)
    return _fma_like(x, rng)


def _planted_features(manifest: pd.DataFrame, columns: pd.MultiIndex, *, effect: str, seed: int) -> np.ndarray:
    """(tracks, 518) float32 for a planted effect; ``manifest`` carries the roles."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFEA8]))
    genres = list(FMA_MEDIUM_TRAINING_COUNTS)
    # one centre per genre and, last, the attention effect's genre-free filler
    centres = rng.standard_normal((len(genres) + 1, len(columns))) * _signal_profile(columns)
    centres *= _PLANTED_SIGNAL[effect]
    index = {name: i for i, name in enumerate(genres)}
    noise = np.random.default_rng(np.random.SeedSequence([seed, 0xFEA9, list(planted.EFFECTS).index(effect)]))
    if effect == "null":  # one recording per album
        albums, album = np.unique(manifest["album_id"].to_numpy(), return_inverse=True)
        first = np.unique(album, return_index=True)[1]
        g = manifest["album_genre"].map(index).to_numpy()[first]
        x = (centres[g] + noise.standard_normal((len(albums), len(columns))))[album]
    else:
        g = manifest["genre"].map(index).to_numpy()
        g = np.where(manifest["role"].to_numpy() == "filler", len(genres), g)
        x = centres[g] + noise.standard_normal((len(manifest), len(columns)))
        if effect == "bag":  # each track pulled towards its own random other genre
            other = (g + noise.integers(1, len(genres), len(g))) % len(genres)
            w = noise.uniform(0.0, _TRACK_PULL_MAX, (len(g), 1))
            x += w * (centres[other] - centres[g])
    return _fma_like(x, rng)
