"""The embedded demo dataset: synthetic music written in FMA's exact on-disk format.

The real Free Music Archive (22 GiB) cannot ship with the project, so the study runs by default on
a dataset generated here. It is laid out exactly like an FMA root, so the very same loaders
(:mod:`mattlib.data.fma`) serve it and the real data::

    <root>/fma_metadata/tracks.csv      FMA's 52 columns, 2-row header, index ``track_id``
    <root>/fma_metadata/genres.csv      FMA's official genre table (copied from package data)
    <root>/fma_medium/XXX/XXXXXX.mp3    one mono clip per track
    <root>/demo_manifest.csv            generator ground truth (genre, album, artist, split, fault)
    <root>/README.md                    what this is
    <root>/demo_complete.json           marker, written last: the root is complete

What is generated
-----------------
* The 16 FMA top genres with fma_medium's long-tail training proportions (Rock 5681 ...
  Easy Listening 13), scaled down with a floor so every genre has tracks in every split
  (at least 3 training, 2 validation and 2 test tracks) while the ordering is kept.
* Artist-disjoint training / validation / test splits (~80/10/10, like FMA's), several albums per
  artist, 1..8 tracks per album, so bags keyed by (album, artist) are meaningful.
* Audio synthesised per genre: a style (timbre, percussion pattern and tempo, scale and chords,
  noise colour, distortion, filtering, reverb, voice) that each album perturbs (key, tempo,
  instrument timbre, mixing, and a "crossover" pull towards another genre) and each track
  perturbs again. Features therefore carry genre signal, and bags carry album signal.
* Three faulty clips, as on real FMA: an empty file, a truncated file and a short clip.

Nothing in it says anything about real music; it only exercises the pipeline at the scale and
shape (long tail, bags, faulty files) of FMA medium.

Size and difficulty (measured on 2 CPU cores, default settings: 600 tracks of 3 s, 22050 Hz)
--------------------------------------------------------------------------------------------
* Generation: ~40 s on 2 idle cores (synthesis and MP3 encoding, ~0.13 CPU-s per track);
  ~15 MiB on disk.
* In the demo study (``params/demo.yaml``, 68 test tracks in 23 albums), LR reaches 59-62 % and
  an RBF SVM 53-56 % track-level test accuracy on 3 s clips. With 10 s clips, a StandardScaler
  + RBF SVC on mean/std of 20 MFCCs, spectral centroid and contrast reaches
  63-69 % track-level test accuracy (seeds 0 and 1; 66-70 % on validation + test), near-perfect
  recall on the head genres and 10-40 % on the 6 rarest; averaging the SVM's decision values
  over an album's tracks (bags) adds up to ~8 points. The knobs are ``_ALBUM_SPREAD``,
  ``_TRACK_SPREAD``, ``_CROSSOVER_MAX`` and ``_BORROW_PROB``.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.data import fma
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

__all__ = [
    "DEMO_SUBSET",
    "DEMO_MARKER",
    "DEFAULT_N_TRACKS",
    "DEFAULT_SECONDS",
    "FMA_MEDIUM_TRAINING_COUNTS",
    "TRACKS_COLUMNS",
    "FMA_MEDIUM_SPLITS",
    "generate_demo",
    "generate_fma_medium_features",
    "is_demo_root",
]

#: FMA subset whose audio folder holds every demo track (``fma_medium`` = small ∪ medium).
DEMO_SUBSET = "medium"
#: Marker file written last; its presence means the demo root is complete.
DEMO_MARKER = fma.GENERATED_MARKER
#: Default number of tracks (fits the study's 10-minute budget on 2 CPU cores).
DEFAULT_N_TRACKS = 600
#: Clip length of the demo (s): FMA clips are 30 s; 3 s keeps `make study` within 6 minutes on 2 cores.
DEFAULT_SECONDS = 3.0
# Bump when the generator changes, so a stale demo is regenerated.
_GENERATOR_VERSION = 1

FMA_MEDIUM_TRAINING_COUNTS = fma.FMA_MEDIUM_TRAIN_COUNTS  # the long tail the demo imitates
#: Tracks per split on the real fma_medium (small ∪ medium): 25,000 in all.
FMA_MEDIUM_SPLITS = {"training": 19922, "validation": 2505, "test": 2573}
# FMA-like bag shapes at full size: tracks per album ~ size**-1.7 on 1..25 (mean ~3.4 tracks, as
# FMA medium's ~750 test bags of 2,573 tracks), albums per artist ~ k**-2 on 1..8.
_MEDIUM_ALBUM_SIZES = (np.arange(1, 26), np.arange(1, 26, dtype=float) ** -1.7)
_MEDIUM_ARTIST_ALBUMS = (np.arange(1, 9), np.arange(1, 9, dtype=float) ** -2.0)
# Genre signal per feature group of the features-only mode, in units of the track noise: the
# MFCC and contrast groups carry most of it (as on FMA), chroma and tonnetz the least.
_MEDIUM_SIGNAL = {"chroma_cens": 0.05, "chroma_cqt": 0.05, "chroma_stft": 0.05, "mfcc": 0.14,
                  "rmse": 0.3, "spectral_bandwidth": 0.3, "spectral_centroid": 0.3,
                  "spectral_contrast": 0.14, "spectral_rolloff": 0.3, "tonnetz": 0.06, "zcr": 0.3}
_MEDIUM_ALBUM_SIGMA = 0.8   # an album's own offset, relative to its genre's signal
_MEDIUM_GENERATOR_VERSION = 1

# Genres of FMA small (balanced, 8 genres); the demo marks some of their tracks subset=small.
_SMALL_GENRES = (
    "Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International", "Pop", "Rock",
)

#: FMA tracks.csv columns (group, field), in the real file's order.
TRACKS_COLUMNS: list[tuple[str, str]] = (
    [("album", f) for f in (
        "comments", "date_created", "date_released", "engineer", "favorites", "id",
        "information", "listens", "producer", "tags", "title", "tracks", "type")]
    + [("artist", f) for f in (
        "active_year_begin", "active_year_end", "associated_labels", "bio", "comments",
        "date_created", "favorites", "id", "latitude", "location", "longitude", "members", "name",
        "related_projects", "tags", "website", "wikipedia_page")]
    + [("set", "split"), ("set", "subset")]
    + [("track", f) for f in (
        "bit_rate", "comments", "composer", "date_created", "date_recorded", "duration",
        "favorites", "genre_top", "genres", "genres_all", "information", "interest",
        "language_code", "license", "listens", "lyricist", "number", "publisher", "tags",
        "title")]
)

# Per-split floor: every genre keeps this many tracks in each split.
_MIN_TRAIN, _MIN_VALID, _MIN_TEST = 3, 2, 2
_MIN_PER_GENRE = _MIN_TRAIN + _MIN_VALID + _MIN_TEST
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)

# --------------------------------------------------------------------------------------------
# Genre styles
# --------------------------------------------------------------------------------------------

# Continuous style parameters and how albums / tracks perturb them:
# name: (kind, album sigma, track sigma, low, high); "log" perturbs multiplicatively.
_PARAMS: dict[str, tuple[str, float, float, float, float]] = {
    "tempo": ("log", 0.10, 0.03, 50.0, 200.0),       # beats per minute
    "swing": ("add", 0.05, 0.02, 0.0, 0.35),         # delay of off-beat 8ths, fraction of an 8th
    "kick": ("add", 0.15, 0.05, 0.0, 1.0),           # percussion levels
    "snare": ("add", 0.15, 0.05, 0.0, 1.0),
    "hat": ("add", 0.15, 0.05, 0.0, 1.0),
    "note_rate": ("log", 0.30, 0.10, 0.25, 4.0),     # melody notes per beat
    "rolloff": ("add", 0.25, 0.08, 0.4, 2.6),        # harmonic amplitude ~ k**-rolloff
    "odd": ("add", 0.15, 0.05, 0.0, 1.0),            # suppression of even harmonics
    "inharm": ("add", 0.001, 0.0002, 0.0, 0.02),     # stiffness B: f_k = k f sqrt(1 + B k^2)
    "attack": ("log", 0.40, 0.15, 0.002, 0.4),       # seconds
    "decay": ("log", 0.40, 0.15, 0.05, 3.0),         # seconds (exponential time constant)
    "register": ("add", 4.0, 1.5, 40.0, 80.0),       # MIDI note of the melody's tonic
    "bass": ("add", 0.15, 0.05, 0.0, 1.0),
    "chord": ("add", 0.7, 0.2, 1.0, 4.0),            # chord voices
    "music": ("add", 0.08, 0.03, 0.05, 1.0),         # level of the instrumental stem
    "voice": ("add", 0.15, 0.05, 0.0, 1.0),          # level of the speech-like stem
    "noise": ("log", 0.50, 0.20, 0.003, 0.6),        # noise rms relative to the signal
    "noise_color": ("add", 0.40, 0.10, 0.0, 2.0),    # spectral slope beta of 1/f**beta noise
    "cutoff": ("log", 0.35, 0.10, 1200.0, 10000.0),  # low-pass, Hz
    "highpass": ("log", 0.30, 0.10, 20.0, 600.0),    # high-pass, Hz
    "drive": ("add", 0.15, 0.05, 0.0, 1.0),          # tanh distortion
    "reverb": ("add", 0.15, 0.05, 0.0, 0.9),         # wet fraction
    "vibrato": ("add", 0.004, 0.001, 0.0, 0.03),     # relative frequency deviation
    "crackle": ("add", 0.05, 0.02, 0.0, 1.0),        # vinyl crackle density
}
_P = list(_PARAMS)


def _style(values: str, scale: str, pattern: str) -> dict:
    nums = [float(v) for v in values.split()]
    assert len(nums) == len(_P)
    return {"params": dict(zip(_P, nums)), "scale": scale, "pattern": pattern}


# Columns: tempo swing kick snare hat note_rate rolloff odd inharm attack decay register bass
#          chord music voice noise noise_color cutoff highpass drive reverb vibrato crackle
_STYLES: dict[str, dict] = {
    "Rock": _style(
        "126 0.0 .8 .8 .5 2 1.0 .3 .0 .01 .4 52 .7 3 1 .15 .04 1.0 5000 60 .8 .2 .0 .0",
        "pent_minor", "backbeat"),
    "Electronic": _style(
        "128 0.0 1. .4 .7 4 0.8 .8 .0 .005 .15 60 .9 1 1 .0 .02 0.0 8000 30 .2 .3 .0 .0",
        "minor", "four_floor"),
    "Experimental": _style(
        "96 .10 .2 .2 .2 1.5 1.2 .5 .012 .2 1.5 60 .3 2 1 .05 .25 0.5 7000 40 .4 .6 .02 .1",
        "chromatic", "random"),
    "Hip-Hop": _style(
        "90 .15 1. .8 .4 1 1.8 .3 .0 .01 .3 48 1. 2 .8 .6 .03 1.0 3500 40 .3 .15 .0 .05",
        "minor", "halftime"),
    "Folk": _style(
        "100 .05 .1 .0 .1 2 1.4 .2 .0 .003 .6 57 .3 2 1 .2 .02 1.0 4000 70 .0 .25 .005 .0",
        "major", "sparse"),
    "Instrumental": _style(
        "104 0.0 .3 .3 .3 2 1.6 .2 .001 .01 .8 60 .5 3 1 .0 .02 1.0 5000 40 .1 .35 .0 .0",
        "major", "backbeat"),
    "Pop": _style(
        "116 0.0 .7 .7 .5 2 1.2 .4 .0 .01 .3 64 .6 3 1 .35 .02 1.0 7000 50 .2 .25 .003 .0",
        "major", "backbeat"),
    "International": _style(
        "110 .10 .3 .2 .6 3 1.3 .5 .002 .005 .3 62 .4 1 1 .3 .04 1.0 5000 60 .1 .3 .01 .0",
        "hijaz", "clave"),
    "Classical": _style(
        "72 0.0 .0 .0 .0 1 1.5 .4 .0 .15 1.2 60 .4 4 1 .0 .01 2.0 4500 40 .0 .6 .01 .0",
        "major", "none"),
    "Old-Time / Historic": _style(
        "100 .20 .2 .2 .1 2 1.3 .4 .0 .01 .4 60 .4 2 1 .3 .12 0.0 2500 350 .3 .1 .005 .6",
        "major", "shuffle"),
    "Jazz": _style(
        "140 .30 .3 .3 .6 3 1.6 .3 .0 .02 .4 58 .7 4 1 .0 .02 1.5 4500 40 .05 .3 .005 .0",
        "dorian", "swing"),
    "Country": _style(
        "110 .05 .6 .6 .3 2 1.1 .1 .0 .003 .35 62 .6 2 1 .4 .02 1.0 6000 60 .15 .2 .008 .0",
        "pent_major", "two_step"),
    "Soul-RnB": _style(
        "80 .15 .7 .6 .4 2 1.7 .3 .0005 .02 .5 57 .8 3 1 .5 .02 1.5 4000 40 .1 .3 .006 .0",
        "dorian", "backbeat"),
    "Spoken": _style(
        "90 0.0 .0 .0 .0 .5 2.0 .3 .0 .05 .8 48 .0 1 .15 1. .02 1.0 3500 100 .0 .1 .0 .0",
        "major", "none"),
    "Blues": _style(
        "84 .30 .5 .5 .3 2 1.2 .3 .0 .01 .5 55 .6 2 1 .4 .03 1.0 4500 50 .4 .25 .01 .0",
        "blues", "shuffle"),
    "Easy Listening": _style(
        "80 0.0 .1 .1 .1 1 2.2 .3 .0 .2 1.5 64 .3 4 1 .0 .01 2.0 3000 40 .0 .5 .004 .0",
        "major", "sparse"),
}

# Difficulty knobs (tuned so a plain MFCC + SVM baseline lands around 50-80 % test accuracy).
_ALBUM_SPREAD = 0.5     # multiplies the album sigmas of _PARAMS
_TRACK_SPREAD = 2.0     # multiplies the track sigmas of _PARAMS
_CROSSOVER_MAX = 0.25   # an album's style is pulled towards another genre by U(0, this)
_BORROW_PROB = 0.25     # chance that an album takes its crossover genre's scale / pattern
_TIMBRE_SIGMA = 0.5     # album instrument: log-normal sigma of per-harmonic gains

_SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "dorian": [0, 2, 3, 5, 7, 9, 10],
    "pent_major": [0, 2, 4, 7, 9],
    "pent_minor": [0, 3, 5, 7, 10],
    "blues": [0, 3, 5, 6, 7, 10],
    "hijaz": [0, 1, 4, 5, 7, 8, 10],
    "chromatic": list(range(12)),
}
# Percussion patterns: 16th-note steps of one 4/4 bar for kick, snare, hat.
_PATTERNS = {
    "four_floor": ([0, 4, 8, 12], [4, 12], [2, 6, 10, 14]),
    "backbeat": ([0, 8, 10], [4, 12], [0, 2, 4, 6, 8, 10, 12, 14]),
    "halftime": ([0, 3, 10], [8], list(range(16))),
    "shuffle": ([0, 8], [4, 12], [0, 2, 4, 6, 8, 10, 12, 14]),
    "sparse": ([0], [], [8]),
    "clave": ([0, 8], [], [0, 3, 6, 10, 12]),
    "two_step": ([0, 8], [4, 12], [0, 2, 4, 6, 8, 10, 12, 14]),
    "swing": ([0], [12], [0, 4, 6, 8, 12, 14]),
    "none": ([], [], []),
    "random": ([], [], []),  # drawn per track
}
_PROGRESSIONS = [[0, 4, 5, 3], [0, 3, 4, 0], [0, 5, 3, 4], [0, 0, 3, 4], [0, 3, 0, 4]]
_VOWELS = np.array([[800, 1200, 2500], [400, 2000, 2600], [300, 2300, 3000],
                    [450, 800, 2500], [325, 700, 2500]], dtype=float)
_N_HARMONICS = 16
_TABLE = 2048  # wavetable length, samples per period


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def is_demo_root(root: str | Path) -> bool:
    """Whether ``root`` holds a complete demo dataset.

    Parameters
    ----------
    root : str or Path
        Candidate data root.

    Returns
    -------
    bool
        True if the completion marker (written last by :func:`generate_demo`) and
        ``fma_metadata/tracks.csv`` are both present; a killed generation is never complete.
    """
    root = Path(root)
    return (root / DEMO_MARKER).is_file() and (root / "fma_metadata" / "tracks.csv").is_file()


def generate_demo(
    out: str | Path,
    *,
    n_tracks: int = DEFAULT_N_TRACKS,
    seconds: float = DEFAULT_SECONDS,
    seed: int = 0,
    sr: int = 22050,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Generate the demo dataset, in FMA's on-disk format, under ``out``.

    The dataset is built in ``<out>.partial`` and renamed to ``out`` once complete, so a killed
    run never looks complete. If ``out`` already holds a complete demo made with the same
    parameters, nothing is done. An existing ``out`` is replaced only if it is empty or holds
    nothing but demo files (an incomplete or older demo); anything else raises.

    Parameters
    ----------
    out : str or Path
        Data root to create (it will hold ``fma_metadata/`` and ``fma_medium/``).
    n_tracks : int, default 600
        Number of tracks, at least ``16 * 7 = 112`` (every genre keeps 3 training, 2 validation
        and 2 test tracks).
    seconds : float, default 3.0 (:data:`DEFAULT_SECONDS`)
        Clip duration in seconds (0.5 to 60).
    seed : int, default 0
        Seed; the same seed gives a byte-identical ``tracks.csv`` and the same audio.
    sr : int, default 22050
        Sample rate in Hz of the mono MP3 clips; one of MP3's rates (8000 ... 48000).
    jobs : int, default 2
        Worker processes for synthesis and MP3 encoding (1 = in this process).
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    Path
        The data root ``out``.

    Raises
    ------
    ValueError
        If a parameter is out of range.
    FileExistsError
        If ``out`` exists and holds files that are not part of a demo dataset.
    """
    n_min = _MIN_PER_GENRE * len(FMA_MEDIUM_TRAINING_COUNTS)
    n_tracks = _check_int("n_tracks", n_tracks, low=n_min)
    seed = _check_int("seed", seed, low=0)
    jobs = _check_int("jobs", jobs, low=1)
    sr = _check_int("sr", sr, low=1)
    if sr not in _MP3_RATES:
        raise ValueError(f"sr must be an MP3 sample rate {_MP3_RATES}, got {sr}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
        0.5 <= float(seconds) <= 60.0
    ):
        raise ValueError(f"seconds must be a number between 0.5 and 60, got {seconds!r}")
    seconds = float(seconds)
    out = Path(out).expanduser()
    settings = {"generator_version": _GENERATOR_VERSION, "n_tracks": n_tracks,
                "seconds": seconds, "seed": seed, "sr": sr}

    if is_demo_root(out) and _read_marker(out) == settings:
        return out
    if out.exists() and not _replaceable(out):
        raise FileExistsError(
            f"{out} exists and holds files that are not part of a demo dataset; "
            "choose another --out or remove it"
        )
    partial = out.resolve().parent / (out.resolve().name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "fma_metadata").mkdir(parents=True)

    tracks, manifest, tasks = _plan(n_tracks=n_tracks, seed=seed)
    with resources.as_file(resources.files("mattlib") / "data" / "genres.csv") as genres_csv:
        shutil.copyfile(genres_csv, partial / "fma_metadata" / "genres.csv")
    tracks.to_csv(partial / "fma_metadata" / "tracks.csv")
    manifest.to_csv(partial / "demo_manifest.csv", index=False)
    (partial / "README.md").write_text(_readme(settings, manifest))

    audio_dir = partial / f"fma_{DEMO_SUBSET}"
    for task in tasks:
        task.update(root=str(audio_dir), seconds=seconds, sr=sr, seed=seed)
    _render_all(tasks, jobs=jobs, progress=progress)

    (partial / DEMO_MARKER).write_text(json.dumps(settings, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return out


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
    out = Path(out).expanduser()
    settings = {"generator_version": _MEDIUM_GENERATOR_VERSION, "shape": "fma_medium", "audio": False,
                "n_tracks": sum(FMA_MEDIUM_SPLITS.values()), "seed": seed}
    if is_demo_root(out) and _read_marker(out) == settings:
        return out
    if out.exists() and not _replaceable(out):
        raise FileExistsError(f"{out} exists and holds files that are not part of a demo dataset; "
                              "choose another --out or remove it")
    partial = out.resolve().parent / (out.resolve().name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "fma_metadata").mkdir(parents=True)

    tracks, manifest, _ = _plan(n_tracks=settings["n_tracks"], seed=seed, counts=_medium_counts(),
                                album_sizes=_MEDIUM_ALBUM_SIZES, artist_albums=_MEDIUM_ARTIST_ALBUMS)
    manifest["fault"] = ""  # no audio, no faulty clips
    columns = fma.fma518_columns()
    table = pd.DataFrame(_medium_features(manifest, columns, seed=seed), index=tracks.index, columns=columns)
    with resources.as_file(resources.files("mattlib") / "data" / "genres.csv") as genres_csv:
        shutil.copyfile(genres_csv, partial / "fma_metadata" / "genres.csv")
    tracks.to_csv(partial / "fma_metadata" / "tracks.csv")
    fma.write_features(partial / "fma_metadata" / "features.csv", table)
    manifest.to_csv(partial / "demo_manifest.csv", index=False)
    (partial / "README.md").write_text(_readme(settings, manifest).replace(
        "`fma_metadata/genres.csv`", "`fma_metadata/features.csv` (518 columns, 3-row header, drawn "
        "per genre and album: no audio), `fma_metadata/genres.csv`"))
    (partial / DEMO_MARKER).write_text(json.dumps(settings, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return out


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


def _medium_features(manifest: pd.DataFrame, columns: pd.MultiIndex, *, seed: int) -> np.ndarray:
    """(tracks, 518) float32: genre centre (pulled to the crossover genre) + album offset + noise."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFEA7]))
    strength = np.array([_MEDIUM_SIGNAL[name] for name in columns.get_level_values("feature")])
    genres = list(FMA_MEDIUM_TRAINING_COUNTS)
    centres = rng.standard_normal((len(genres), len(columns))) * strength
    g = manifest["genre"].map({name: i for i, name in enumerate(genres)}).to_numpy()
    other = manifest["crossover_genre"].map({name: i for i, name in enumerate(genres)}).to_numpy()
    w = manifest["crossover_weight"].to_numpy()[:, None]
    _, album = np.unique(manifest["album_id"].to_numpy(), return_inverse=True)
    album_offset = rng.standard_normal((album.max() + 1, len(columns))) * strength * _MEDIUM_ALBUM_SIGMA
    x = (1 - w) * centres[g] + w * centres[other] + album_offset[album]
    x += rng.standard_normal(x.shape)
    # FMA-like location and scale per column (e.g. a centroid in Hz, a kurtosis near 0)
    loc = rng.normal(0.0, 3.0, len(columns))
    scale = np.exp(rng.normal(0.0, 1.0, len(columns)))
    return (x * scale + loc).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Helpers: validation, marker, README
# --------------------------------------------------------------------------------------------

def _check_int(name: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        return None


def _replaceable(out: Path) -> bool:
    """An existing ``out`` may be replaced if it is an empty folder or holds only demo files."""
    if not out.is_dir():
        return False
    demo_names = {"fma_metadata", f"fma_{DEMO_SUBSET}", "README.md", "demo_manifest.csv",
                  DEMO_MARKER}
    return all(p.name in demo_names for p in out.iterdir())


def _readme(settings: dict, manifest: pd.DataFrame) -> str:
    counts = manifest.groupby(["genre", "split"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=list(FMA_MEDIUM_TRAINING_COUNTS),
                            columns=["training", "validation", "test"], fill_value=0)
    faults = manifest.loc[manifest["fault"] != "", ["track_id", "fault"]]
    lines = [
        "# mattlib demo dataset (synthetic)",
        "",
        "Generated by `mattlib.data.demo.generate_demo` (`matt demo-data`). **Synthetic audio**:",
        "every clip is synthesised from a per-genre recipe (timbre, rhythm, harmony, noise)",
        "perturbed per album and per track. It only exercises the pipeline at the shape of FMA",
        "medium (16 top genres with its long tail, artist-disjoint splits, album bags, faulty",
        "files); results on it say **nothing about real music**.",
        "",
        "The layout is FMA's: `fma_metadata/tracks.csv` (FMA's 52 columns, 2-row header),",
        "`fma_metadata/genres.csv` (FMA's official table, CC BY 4.0, Defferrard et al.,",
        "ISMIR 2017),",
        f"`fma_{DEMO_SUBSET}/XXX/XXXXXX.mp3`. Track-level fields such as `duration`, `bit_rate`,",
        "listens or dates are plausible invented values, not measurements of the clips.",
        "`demo_manifest.csv` holds the generator's ground truth per track.",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "Faulty clips (as on real FMA): "
        + ", ".join(f"{r.track_id} ({r.fault})" for r in faults.itertuples()) + ".",
        "",
        "| genre | training | validation | test |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {g} | {r.training} | {r.validation} | {r.test} |" for g, r in counts.iterrows()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Metadata plan
# --------------------------------------------------------------------------------------------

def _genre_table() -> pd.DataFrame:
    with resources.files("mattlib").joinpath("data", "genres.csv").open("r") as f:
        return pd.read_csv(f, index_col=0)


def _genre_totals(n_tracks: int) -> dict[str, int]:
    """Tracks per genre: the floor plus a largest-remainder share of the rest by FMA's counts."""
    names = list(FMA_MEDIUM_TRAINING_COUNTS)
    weights = np.array([FMA_MEDIUM_TRAINING_COUNTS[g] for g in names], dtype=float)
    share = (n_tracks - _MIN_PER_GENRE * len(names)) * weights / weights.sum()
    extra = np.floor(share).astype(int)
    left = n_tracks - _MIN_PER_GENRE * len(names) - extra.sum()
    # Ties broken by the real order, so the allocation stays monotone in FMA's counts.
    order = sorted(range(len(names)), key=lambda i: (-(share[i] - extra[i]), i))
    extra[order[:left]] += 1
    return {g: _MIN_PER_GENRE + int(e) for g, e in zip(names, extra)}


def _split_counts(total: int) -> dict[str, int]:
    """~80/10/10 split of one genre's tracks, monotone in ``total``, with the per-split floor."""
    training = min(total - _MIN_VALID - _MIN_TEST, round(0.8 * total))
    rest = total - training
    return {"training": training, "validation": rest // 2, "test": rest - rest // 2}


def _partition(total: int, rng: np.random.Generator, *, sizes: np.ndarray,
               weights: np.ndarray) -> list[int]:
    """Split ``total`` into parts drawn from ``sizes`` (the last part takes what is left)."""
    parts = []
    while total > 0:
        size = int(min(total, rng.choice(sizes, p=weights / weights.sum())))
        parts.append(size)
        total -= size
    return parts


def _words(rng: np.random.Generator, n: int) -> str:
    syllables = ["ka", "lo", "mi", "ra", "ne", "to", "su", "vel", "dar", "an", "or", "is", "bel",
                 "mo", "ri", "za", "fen", "tu", "lu", "gor", "sha", "pe", "qui", "ton"]
    words = []
    for _ in range(n):
        k = int(rng.integers(1, 4))
        words.append("".join(rng.choice(syllables, size=k)).capitalize())
    return " ".join(words)


def _timestamp(base: np.datetime64, seconds: int) -> str:
    return str(base + np.timedelta64(int(seconds), "s")).replace("T", " ")


def _plan(*, n_tracks: int, seed: int, counts: dict[str, dict[str, int]] | None = None,
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
    subgenres = {g: [int(i) for i in genres.index[genres["top_level"] == genre_id[g]]]
                 for g in FMA_MEDIUM_TRAINING_COUNTS}

    def ancestors(gid: int) -> list[int]:
        chain = [gid]
        while int(genres.at[chain[-1], "parent"]) != 0:
            chain.append(int(genres.at[chain[-1], "parent"]))
        return chain

    # 1. Albums (genre, split, size) grouped into artists; artists never cross splits.
    album_sizes, album_weights = album_sizes or (np.arange(1, 9), np.array([2, 3, 4, 4, 3, 2, 2, 1], float))
    artist_sizes, artist_weights = artist_albums or (np.arange(1, 5), np.array([3, 3, 2, 1], float))
    if counts is None:
        counts = {genre: _split_counts(total) for genre, total in _genre_totals(n_tracks).items()}
    albums: list[dict] = []
    n_artists = 0
    for genre, per_split in counts.items():
        for split, count in per_split.items():
            sizes = _partition(count, rng, sizes=album_sizes, weights=album_weights)
            per_artist = _partition(len(sizes), rng, sizes=artist_sizes, weights=artist_weights)
            start = 0
            for k in per_artist:
                for size in sizes[start:start + k]:
                    albums.append({"genre": genre, "split": split, "size": size,
                                   "artist": n_artists})
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
        track_id += int(rng.integers(0, 3)) if rows else 0      # FMA's first track is 2
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
                    f"{int(rng.integers(1990, 2012))}-01-01 00:00:00"
                    if rng.random() < 0.4 else None),
                ("artist", "_created"): created,
            }
        artist = artists[album["artist"]]
        album_created = artist[("artist", "_created")] + int(rng.integers(0, 365 * 86400))
        sub = int(rng.choice(subgenres[genre])) if rng.random() < 0.6 else genre_id[genre]
        size = album["size"]
        album_row = {
            ("album", "id"): album_id,
            ("album", "title"): _words(rng, int(rng.integers(1, 4))),
            ("album", "type"): "Single Tracks" if size == 1 else str(
                rng.choice(["Album", "Album", "Album", "Live Performance"])),
            ("album", "tracks"): size + int(rng.integers(0, 3)),
            ("album", "date_created"): _timestamp(base, album_created),
            ("album", "date_released"): _timestamp(
                base, album_created - album_created % 86400 + 86400 * int(rng.integers(1, 60))),
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
            rows.append({
                **album_row,
                **{k: v for k, v in artist.items() if k[1] != "_created"},
                ("set", "split"): album["split"],
                ("set", "subset"): "medium",
                ("track", "_id"): track_id,
                ("track", "bit_rate"): int(rng.choice([128000, 160000, 192000, 256000, 320000],
                                                      p=[.1, .15, .1, .6, .05])),
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
            })
            tasks.append({"track_id": track_id, "style": style, "fault": ""})
            rows[-1][("manifest", "crossover")] = crossover
            rows[-1][("manifest", "weight")] = round(weight, 4)
            rows[-1][("manifest", "borrowed")] = borrowed

    frame = pd.DataFrame(rows)
    ids = frame.pop(("track", "_id")).to_numpy()

    # 3. Subset small: a balanced share of FMA small's 8 genres, per split.
    subset = frame[("set", "subset")].to_numpy(dtype=object)
    split_of = frame[("set", "split")].to_numpy()
    genre_of = frame[("track", "genre_top")].to_numpy()
    for split in ("training", "validation", "test"):
        k = max(1, min(int(np.sum((genre_of == g) & (split_of == split))) for g in _SMALL_GENRES)
                // 2)
        for g in _SMALL_GENRES:
            idx = np.flatnonzero((genre_of == g) & (split_of == split))
            subset[rng.choice(idx, size=k, replace=False)] = "small"
    frame[("set", "subset")] = subset

    # 4. Faulty clips: training tracks of the two largest genres, in albums of >= 2 tracks.
    album_of = frame[("album", "id")].to_numpy()
    album_size = pd.Series(album_of).map(pd.Series(album_of).value_counts()).to_numpy()
    faults = np.full(len(frame), "", dtype=object)
    for kind, genre in (("empty", "Rock"), ("truncated", "Electronic"), ("short", "Rock")):
        ok = np.flatnonzero((genre_of == genre) & (split_of == "training") & (album_size >= 2)
                            & (faults == ""))
        faults[int(rng.choice(ok))] = kind
    for task, fault in zip(tasks, faults):
        task["fault"] = fault

    # 5. tracks.csv in FMA's exact columns; the manifest from the same rows.
    tracks = pd.DataFrame({c: frame[c] if c in frame else None for c in TRACKS_COLUMNS})
    tracks.columns = pd.MultiIndex.from_tuples(TRACKS_COLUMNS)
    tracks.index = pd.Index(ids, name="track_id")
    manifest = pd.DataFrame({
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
    })
    return tracks, manifest, tasks


def _album_style(genre: str, names: list[str], rng: np.random.Generator
                 ) -> tuple[dict, str, float, str]:
    """An album's style: its genre's, pulled towards a crossover genre, then jittered.

    Returns the style (params, scale, pattern, key, timbre, gain), the crossover genre, the pull
    weight in [0, _CROSSOVER_MAX], and what was borrowed from it ('', 'scale' or 'pattern').
    """
    own = _STYLES[genre]
    other_name = str(rng.choice([g for g in names if g != genre]))
    other = _STYLES[other_name]
    weight = float(rng.uniform(0.0, _CROSSOVER_MAX))
    params = {}
    for name, (kind, sigma, _, low, high) in _PARAMS.items():
        a, b = own["params"][name], other["params"][name]
        if kind == "log":
            value = math.exp((1 - weight) * math.log(a) + weight * math.log(b)
                             + rng.normal(0.0, sigma * _ALBUM_SPREAD))
        else:
            value = (1 - weight) * a + weight * b + rng.normal(0.0, sigma * _ALBUM_SPREAD)
        params[name] = float(np.clip(value, low, high))
    scale, pattern, borrowed = own["scale"], own["pattern"], ""
    if rng.random() < _BORROW_PROB:
        if rng.random() < 0.5:
            scale, borrowed = other["scale"], "scale"
        else:
            pattern, borrowed = other["pattern"], "pattern"
    style = {
        "params": params,
        "scale": scale,
        "pattern": pattern,
        "key": int(rng.integers(0, 12)),                     # transposition, semitones
        "timbre": np.exp(rng.normal(0.0, _TIMBRE_SIGMA, _N_HARMONICS)).round(4).tolist(),
        "gain_db": float(rng.uniform(-6.0, 0.0)),
    }
    return style, other_name, weight, borrowed


# --------------------------------------------------------------------------------------------
# Audio synthesis
# --------------------------------------------------------------------------------------------

def _render_all(tasks: list[dict], *, jobs: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="demo audio", unit="track", disable=not progress)
    try:
        if jobs == 1:
            for task in tasks:
                _render_task(task)
                bar.update()
        else:
            # joblib's loky workers: no fork of a threaded parent, and no re-import of the
            # caller's __main__ (works from notebooks, stdin and unguarded scripts).
            from joblib import Parallel, delayed

            run = Parallel(n_jobs=jobs, backend="loky", batch_size=4,
                           return_as="generator_unordered")
            for _ in run(delayed(_render_task)(task) for task in tasks):
                bar.update()
    finally:
        bar.close()


def _render_task(task: dict) -> int:
    """Synthesise, encode and write one track's clip (with its fault, if any)."""
    track_id = int(task["track_id"])
    folder = Path(task["root"]) / f"{track_id:06d}"[:3]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{track_id:06d}.mp3"
    if task["fault"] == "empty":
        path.write_bytes(b"")
        return track_id
    rng = np.random.default_rng(np.random.SeedSequence([task["seed"], 0xA0D10, track_id]))
    seconds = task["seconds"] * (0.4 if task["fault"] == "short" else 1.0)
    y = synthesize_track(task["style"], seconds=seconds, sr=task["sr"], rng=rng)
    buffer = io.BytesIO()
    sf.write(buffer, y, task["sr"], format="MP3")
    data = buffer.getvalue()
    if task["fault"] == "truncated":
        data = data[: int(len(data) * 0.45)]
    path.write_bytes(data)
    return track_id


def _track_params(style: dict, rng: np.random.Generator) -> dict:
    params = {}
    for name, (kind, _, sigma, low, high) in _PARAMS.items():
        value = style["params"][name]
        noise = rng.normal(0.0, sigma * _TRACK_SPREAD)
        value = value * math.exp(noise) if kind == "log" else value + noise
        params[name] = float(np.clip(value, low, high))
    return params


def _midi_hz(note: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=float) - 69.0) / 12.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def _add(buffer: np.ndarray, start: int, sound: np.ndarray) -> None:
    """Add ``sound`` into ``buffer`` from sample ``start`` (clipped at the end)."""
    if start >= len(buffer) or start < 0:
        return
    stop = min(len(buffer), start + len(sound))
    buffer[start:stop] += sound[: stop - start]


def _note(freq: float, dur: float, p: dict, harmonic_gain: np.ndarray, sr: int,
          rng: np.random.Generator, *, rolloff: float | None = None) -> np.ndarray:
    """One synthesised note, shape (samples,).

    The note sounds for ``dur`` seconds then releases (40 ms time constant); it is cut once its
    envelope has decayed (``attack + 7 decay``) or 0.2 s after the gate closes. Harmonic notes
    read a band-limited wavetable; inharmonic ones (``inharm`` > 0.002) are summed partials.
    """
    attack = max(p["attack"], 0.002)
    n = max(int(min(dur + 0.2, attack + 7.0 * p["decay"]) * sr), 1)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    k = np.arange(1, _N_HARMONICS + 1, dtype=float)
    stretch = k * np.sqrt(1.0 + p["inharm"] * k**2)          # inharmonic partial ratios
    keep = stretch * freq < min(0.45 * sr, 2.5 * p["cutoff"])
    keep[0] = True
    amp = k ** -(p["rolloff"] if rolloff is None else rolloff) * harmonic_gain
    amp = amp * np.where(k % 2 == 0, 1.0 - 0.9 * p["odd"], 1.0)
    cycles = np.float32(freq) * t + np.float32(rng.random())  # phase in periods
    if p["vibrato"] > 1e-4:
        rate = 5.5 + rng.uniform(-0.5, 0.5)
        cycles -= np.float32(freq * p["vibrato"] / (2 * np.pi * rate)) * np.cos(
            np.float32(2 * np.pi * rate) * t)
    if p["inharm"] > 0.002:  # inharmonic partials: additive synthesis
        wave = amp[keep].astype(np.float32) @ np.sin(
            np.float32(2 * np.pi) * np.outer(stretch[keep].astype(np.float32), cycles))
    else:  # harmonic: one band-limited period in a wavetable, read at the note's phase
        grid = np.arange(_TABLE) / _TABLE
        table = (amp[keep] @ np.sin(2 * np.pi * np.outer(k[keep], grid))).astype(np.float32)
        wave = table[(cycles * _TABLE).astype(np.int64) & (_TABLE - 1)]
    env = np.exp(-np.maximum(t - np.float32(attack), 0) / np.float32(p["decay"]))
    ramp = min(n, int(attack * sr))
    env[:ramp] *= t[:ramp] / np.float32(attack)
    gate = int(dur * sr)
    if gate < n:                                              # release after the gate
        env[gate:] *= np.exp(-(t[gate:] - t[gate]) / np.float32(0.04))
    return wave * env


def _drum(kind: str, p: dict, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One percussion hit, shape (samples,)."""
    if kind == "kick":
        t = np.arange(int(0.25 * sr)) / sr
        sweep = 45 + 110 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(sweep) / sr) * np.exp(-t / 0.09)
    if kind == "snare":
        t = np.arange(int(0.2 * sr)) / sr
        noise = signal.sosfilt(signal.butter(2, [1500, 6000], "bandpass", fs=sr, output="sos"),
                               rng.standard_normal(len(t)))
        return (0.8 * noise + 0.4 * np.sin(2 * np.pi * 185 * t)) * np.exp(-t / 0.06)
    t = np.arange(int(0.08 * sr)) / sr
    hi = signal.sosfilt(signal.butter(2, min(7000, 0.4 * sr), "highpass", fs=sr, output="sos"),
                        rng.standard_normal(len(t)))
    return hi * np.exp(-t / 0.02)


def _voice(n: int, p: dict, tempo: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like stem: a glottal buzz through vowel formants, gated into syllables."""
    out = np.zeros(n)
    f0 = rng.uniform(100, 210)
    rhythmic = p["kick"] + p["snare"] > 0.6                    # rap-like: syllables on the grid
    step = 60.0 / tempo / 4                                    # a 16th note, seconds
    pos = rng.uniform(0, 0.3)
    total = n / sr
    while pos < total:
        dur = step * rng.integers(1, 3) if rhythmic else rng.uniform(0.12, 0.3)
        m = int(dur * sr)
        if m < 16:
            break
        t = np.arange(m) / sr
        pitch = f0 * (1 + 0.15 * np.sin(2 * np.pi * pos / 3.0)) * (1 + rng.normal(0, 0.03))
        buzz = 2 * ((pitch * t + rng.random()) % 1.0) - 1.0
        formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.1)
        syl = np.zeros(m)
        for j, f in enumerate(formants):
            if f < 0.45 * sr:
                b, a = signal.iirpeak(f, 6.0, fs=sr)
                syl += signal.lfilter(b, a, buzz) / (j + 1)
        syl *= np.sin(np.pi * t / dur) ** 0.5
        _add(out, int(pos * sr), syl)
        pos += dur + (0.0 if rhythmic or rng.random() > 0.25 else rng.uniform(0.1, 0.5))
    return out


def _colored_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    size = sp_fft.next_fast_len(n, real=True)
    spectrum = sp_fft.rfft(rng.standard_normal(size))
    f = np.maximum(np.arange(len(spectrum)), 1.0)
    noise = sp_fft.irfft(spectrum * f ** (-beta / 2), size)[:n]
    return noise / _rms(noise)


def synthesize_track(style: dict, *, seconds: float, sr: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Synthesise one clip from an album style and the track's random generator.

    Parameters
    ----------
    style : dict
        Album style from :func:`_album_style` (``params``, ``scale``, ``pattern``, ``key``,
        ``timbre``, ``gain_db``).
    seconds : float
        Clip duration in seconds.
    sr : int
        Sample rate in Hz.
    rng : numpy.random.Generator
        The track's generator (per-track variation: tempo, melody, mix).

    Returns
    -------
    numpy.ndarray, shape (round(seconds * sr),), float32
        Mono waveform in [-1, 1].
    """
    p = _track_params(style, rng)
    n = int(round(seconds * sr))
    lead = int(rng.uniform(0.5, 1.5) * sr)                    # start mid-piece: reverb tails
    total = n + lead
    beat = 60.0 / p["tempo"]
    bar = 4 * beat
    n_bars = int(math.ceil(total / sr / bar)) + 1
    timbre = np.asarray(style["timbre"]) * np.exp(rng.normal(0, 0.1, _N_HARMONICS))
    scale = _SCALES[style["scale"]]
    tonic = p["register"] + style["key"] - 6

    def pitch(degree: int, octave_shift: int = 0) -> float:
        octave, step = divmod(degree, len(scale))
        return tonic + 12 * (octave + octave_shift) + scale[step]

    # Instrumental stem: chords per bar, bass, and a random-walk melody.
    music = np.zeros(total)
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    voices = int(round(p["chord"]))
    degree = int(rng.integers(0, len(scale)))
    step_dur = beat / p["note_rate"]
    for b in range(n_bars):
        root = progression[b % len(progression)] if style["scale"] != "chromatic" else int(
            rng.integers(0, 12))
        start = int(b * bar * sr)
        for v in range(voices):
            f = _midi_hz(pitch(root + 2 * v, -1))
            _add(music, start, 0.5 / voices * _note(f, bar * 0.95, p, timbre, sr, rng))
        if p["bass"] > 0.02:
            for q in range(2):
                f = _midi_hz(pitch(root, -2))
                _add(music, int(start + q * 2 * beat * sr),
                     p["bass"] * 0.8 * _note(f, 1.8 * beat, p, timbre, sr, rng, rolloff=2.5))
        t_note = 0.0
        while t_note < bar - 1e-9:
            if rng.random() > 0.15:                            # rests
                degree = int(np.clip(degree + rng.integers(-2, 3), -3, 2 * len(scale)))
                f = _midi_hz(pitch(degree))
                _add(music, int(start + t_note * sr),
                     0.7 * _note(f, step_dur * 0.9, p, timbre, sr, rng))
            t_note += step_dur
    music *= p["music"] * 0.12 / _rms(music)

    # Percussion stem on a 16th grid, with swing on the off-beat 8ths.
    drums = np.zeros(total)
    kick, snare, hat = _PATTERNS[style["pattern"]]
    if style["pattern"] == "random":
        kick, snare, hat = (list(np.flatnonzero(rng.random(16) < d)) for d in (0.2, 0.15, 0.35))
    hits = {"kick": (kick, 0.6 * p["kick"]), "snare": (snare, 0.45 * p["snare"]),
            "hat": (hat, 0.2 * p["hat"])}
    for name, (steps, level) in hits.items():
        if level < 0.01 or not steps:
            continue
        sound = _drum(name, p, sr, rng)
        for b in range(n_bars):
            for s in steps:
                delay = p["swing"] * beat / 2 if s % 4 == 2 else 0.0
                at = b * bar + s * beat / 4 + delay
                _add(drums, int(at * sr), level * rng.uniform(0.75, 1.0) * sound)

    # Voice stem.
    voice = np.zeros(total)
    if p["voice"] > 0.03:
        voice = _voice(total, p, p["tempo"], sr, rng)
        voice *= p["voice"] * 0.12 / _rms(voice)

    y = music + drums + voice
    # Mixing chain: distortion, band limits, noise, crackle, reverb.
    drive = 1.0 + 8.0 * p["drive"]
    y = np.tanh(drive * y / (4 * _rms(y))) * _rms(y)
    low = min(p["cutoff"], 0.45 * sr)
    y = signal.sosfilt(signal.butter(2, [p["highpass"], low], "bandpass", fs=sr, output="sos"), y)
    y = y + p["noise"] * _rms(y) * _colored_noise(total, p["noise_color"], rng)
    if p["crackle"] > 0.01:
        clicks = np.zeros(total)
        where = rng.random(total) < p["crackle"] * 40 / sr
        clicks[where] = rng.standard_normal(int(where.sum())) * 6 * _rms(y)
        y = y + clicks
    if p["reverb"] > 0.01:
        tau = 0.05 + 0.6 * p["reverb"]
        t = np.arange(int(min(3 * tau, 1.5) * sr)) / sr
        wet = signal.fftconvolve(y, rng.standard_normal(len(t)) * np.exp(-t / tau))[:total]
        y = (1 - p["reverb"]) * y + p["reverb"] * wet * _rms(y) / _rms(wet)
    y = y[lead:lead + n]
    gain = 10 ** ((style["gain_db"] + rng.normal(0, 1.0)) / 20)
    return (0.9 * gain * y / (np.max(np.abs(y)) + 1e-12)).astype(np.float32)
