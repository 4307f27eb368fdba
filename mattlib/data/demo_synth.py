"""The demo's audio: per-genre styles, album styles, the planted effects' styles, and synthesis.

A genre's style (timbre, percussion pattern and tempo, scale and chords, noise colour,
distortion, filtering, reverb, voice) is perturbed per album (key, tempo, instrument timbre,
mixing, and a "crossover" pull towards another genre) and per track. The planted effects
(:mod:`mattlib.data.planted`) change what a track is synthesised from:

* ``null``: every track of an album is the album's recording (its style, the album's seed);
* ``bag``: each track's style is pulled again, towards a random other genre by U(0,
  ``_TRACK_PULL_MAX``) and may borrow that genre's scale or pattern: strong per-track noise in
  genre space, which averages out over an album;
* ``attention``: fillers are synthesised from one genre-free style (``_FILLER``: a noisy,
  reverberant whole-tone interlude without drums or voice, used by no genre), the same for every
  album (only the album's gain is kept), with ``_FOCUS_SPREAD`` per-track spread; the informative
  tracks carry their genre clearly: the album's style pulled back towards the genre's own by
  ``_FOCUS`` (1 = no crossover or album jitter) with ``_FOCUS_SPREAD`` per-track spread, since
  only a third of the training tracks teach a track model the genres.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

# Continuous style parameters and how albums / tracks perturb them:
# name: (kind, album sigma, track sigma, low, high); "log" perturbs multiplicatively.
_PARAMS: dict[str, tuple[str, float, float, float, float]] = {
    "tempo": ("log", 0.10, 0.03, 50.0, 200.0),  # beats per minute
    "swing": ("add", 0.05, 0.02, 0.0, 0.35),  # delay of off-beat 8ths, fraction of an 8th
    "kick": ("add", 0.15, 0.05, 0.0, 1.0),  # percussion levels
    "snare": ("add", 0.15, 0.05, 0.0, 1.0),
    "hat": ("add", 0.15, 0.05, 0.0, 1.0),
    "note_rate": ("log", 0.30, 0.10, 0.25, 4.0),  # melody notes per beat
    "rolloff": ("add", 0.25, 0.08, 0.4, 2.6),  # harmonic amplitude ~ k**-rolloff
    "odd": ("add", 0.15, 0.05, 0.0, 1.0),  # suppression of even harmonics
    "inharm": ("add", 0.001, 0.0002, 0.0, 0.02),  # stiffness B: f_k = k f sqrt(1 + B k^2)
    "attack": ("log", 0.40, 0.15, 0.002, 0.4),  # seconds
    "decay": ("log", 0.40, 0.15, 0.05, 3.0),  # seconds (exponential time constant)
    "register": ("add", 4.0, 1.5, 40.0, 80.0),  # MIDI note of the melody's tonic
    "bass": ("add", 0.15, 0.05, 0.0, 1.0),
    "chord": ("add", 0.7, 0.2, 1.0, 4.0),  # chord voices
    "music": ("add", 0.08, 0.03, 0.05, 1.0),  # level of the instrumental stem
    "voice": ("add", 0.15, 0.05, 0.0, 1.0),  # level of the speech-like stem
    "noise": ("log", 0.50, 0.20, 0.003, 0.6),  # noise rms relative to the signal
    "noise_color": ("add", 0.40, 0.10, 0.0, 2.0),  # spectral slope beta of 1/f**beta noise
    "cutoff": ("log", 0.35, 0.10, 1200.0, 10000.0),  # low-pass, Hz
    "highpass": ("log", 0.30, 0.10, 20.0, 600.0),  # high-pass, Hz
    "drive": ("add", 0.15, 0.05, 0.0, 1.0),  # tanh distortion
    "reverb": ("add", 0.15, 0.05, 0.0, 0.9),  # wet fraction
    "vibrato": ("add", 0.004, 0.001, 0.0, 0.03),  # relative frequency deviation
    "crackle": ("add", 0.05, 0.02, 0.0, 1.0),  # vinyl crackle density
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
        "126 0.0 .8 .8 .5 2 1.0 .3 .0 .01 .4 52 .7 3 1 .15 .04 1.0 5000 60 .8 .2 .0 .0", "pent_minor", "backbeat"
    ),
    "Electronic": _style(
        "128 0.0 1. .4 .7 4 0.8 .8 .0 .005 .15 60 .9 1 1 .0 .02 0.0 8000 30 .2 .3 .0 .0", "minor", "four_floor"
    ),
    "Experimental": _style(
        "96 .10 .2 .2 .2 1.5 1.2 .5 .012 .2 1.5 60 .3 2 1 .05 .25 0.5 7000 40 .4 .6 .02 .1", "chromatic", "random"
    ),
    "Hip-Hop": _style(
        "90 .15 1. .8 .4 1 1.8 .3 .0 .01 .3 48 1. 2 .8 .6 .03 1.0 3500 40 .3 .15 .0 .05", "minor", "halftime"
    ),
    "Folk": _style(
        "100 .05 .1 .0 .1 2 1.4 .2 .0 .003 .6 57 .3 2 1 .2 .02 1.0 4000 70 .0 .25 .005 .0", "major", "sparse"
    ),
    "Instrumental": _style(
        "104 0.0 .3 .3 .3 2 1.6 .2 .001 .01 .8 60 .5 3 1 .0 .02 1.0 5000 40 .1 .35 .0 .0", "major", "backbeat"
    ),
    "Pop": _style(
        "116 0.0 .7 .7 .5 2 1.2 .4 .0 .01 .3 64 .6 3 1 .35 .02 1.0 7000 50 .2 .25 .003 .0", "major", "backbeat"
    ),
    "International": _style(
        "110 .10 .3 .2 .6 3 1.3 .5 .002 .005 .3 62 .4 1 1 .3 .04 1.0 5000 60 .1 .3 .01 .0", "hijaz", "clave"
    ),
    "Classical": _style(
        "72 0.0 .0 .0 .0 1 1.5 .4 .0 .15 1.2 60 .4 4 1 .0 .01 2.0 4500 40 .0 .6 .01 .0", "major", "none"
    ),
    "Old-Time / Historic": _style(
        "100 .20 .2 .2 .1 2 1.3 .4 .0 .01 .4 60 .4 2 1 .3 .12 0.0 2500 350 .3 .1 .005 .6", "major", "shuffle"
    ),
    "Jazz": _style(
        "140 .30 .3 .3 .6 3 1.6 .3 .0 .02 .4 58 .7 4 1 .0 .02 1.5 4500 40 .05 .3 .005 .0", "dorian", "swing"
    ),
    "Country": _style(
        "110 .05 .6 .6 .3 2 1.1 .1 .0 .003 .35 62 .6 2 1 .4 .02 1.0 6000 60 .15 .2 .008 .0", "pent_major", "two_step"
    ),
    "Soul-RnB": _style(
        "80 .15 .7 .6 .4 2 1.7 .3 .0005 .02 .5 57 .8 3 1 .5 .02 1.5 4000 40 .1 .3 .006 .0", "dorian", "backbeat"
    ),
    "Spoken": _style(
        "90 0.0 .0 .0 .0 .5 2.0 .3 .0 .05 .8 48 .0 1 .15 1. .02 1.0 3500 100 .0 .1 .0 .0", "major", "none"
    ),
    "Blues": _style(
        "84 .30 .5 .5 .3 2 1.2 .3 .0 .01 .5 55 .6 2 1 .4 .03 1.0 4500 50 .4 .25 .01 .0", "blues", "shuffle"
    ),
    "Easy Listening": _style(
        "80 0.0 .1 .1 .1 1 2.2 .3 .0 .2 1.5 64 .3 4 1 .0 .01 2.0 3000 40 .0 .5 .004 .0", "major", "sparse"
    ),
}

# Difficulty knobs (tuned so a plain MFCC + SVM baseline lands around 50-80 % test accuracy).
_ALBUM_SPREAD = 0.5  # multiplies the album sigmas of _PARAMS
_TRACK_SPREAD = 2.0  # multiplies the track sigmas of _PARAMS
_CROSSOVER_MAX = 0.25  # an album's style is pulled towards another genre by U(0, this)
_BORROW_PROB = 0.25  # chance that an album takes its crossover genre's scale / pattern
_TIMBRE_SIGMA = 0.5  # album instrument: log-normal sigma of per-harmonic gains

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
_VOWELS = np.array(
    [[800, 1200, 2500], [400, 2000, 2600], [300, 2300, 3000], [450, 800, 2500], [325, 700, 2500]], dtype=float
)
_N_HARMONICS = 16
_TABLE = 2048  # wavetable length, samples per period


def _album_style(genre: str, names: list[str], rng: np.random.Generator) -> tuple[dict, str, float, str]:
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
            value = math.exp((1 - weight) * math.log(a) + weight * math.log(b) + rng.normal(0.0, sigma * _ALBUM_SPREAD))
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
        "key": int(rng.integers(0, 12)),  # transposition, semitones
        "timbre": np.exp(rng.normal(0.0, _TIMBRE_SIGMA, _N_HARMONICS)).round(4).tolist(),
        "gain_db": float(rng.uniform(-6.0, 0.0)),
    }
    return style, other_name, weight, borrowed


# --------------------------------------------------------------------------------------------
# Planted effects
# --------------------------------------------------------------------------------------------

# The attention effect's filler: genre-free (no genre's scale, no drums, no voice, more noise and
# reverb than any genre), the same for every album. Columns as in _STYLES.
_SCALES["whole_tone"] = [0, 2, 4, 6, 8, 10]
_FILLER = _style(
    "100 0.0 .0 .0 .0 .5 1.5 .5 .0 .08 .8 60 .3 3 .6 .0 .5 0.3 5000 80 .0 .5 .005 .0", "whole_tone", "none"
)
_TRACK_PULL_MAX = 0.6  # bag effect: a track's style is pulled towards another genre by U(0, this)
_TRACK_BORROW_PROB = 0.3  # bag effect: chance a track takes that genre's scale or pattern
_FOCUS = 1.0  # attention effect: informative tracks' style pulled back towards their genre's by this
_FOCUS_SPREAD = 1.0  # attention effect: informative tracks' per-track spread (else _TRACK_SPREAD)


def planted_tasks(tasks: list[dict], manifest: pd.DataFrame, *, effect: str, seed: int) -> None:
    """Set each rendering task's ``style`` and ``rng_key`` for ``effect`` (in place).

    ``manifest`` is the plan's, with the roles of :func:`mattlib.data.planted.assign_roles`, in
    the tasks' order. ``rng_key`` is ``("track", id)`` (the track's own draws) or
    ``("album", id)`` (null: every track of an album draws the same, so it is the same clip).
    """
    roles = manifest["role"].to_numpy()
    if effect == "null":
        album_style = {}
        for task, own in zip(tasks, manifest["genre"] == manifest["album_genre"]):
            if own:
                album_style.setdefault(task["album_id"], task["style"])
        for task in tasks:
            task.update(style=album_style[task["album_id"]], rng_key=("album", int(task["album_id"])))
        return
    names = list(_STYLES)
    for task, role, genre in zip(tasks, roles, manifest["genre"]):
        task["rng_key"] = ("track", int(task["track_id"]))
        if effect == "bag":
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xBA6, int(task["track_id"])]))
            task["style"] = _pulled(task["style"], genre, names, rng)
        elif role == "filler":
            task["style"] = _filler_style(task["style"])
        else:  # attention: the tracks that carry the genre carry it clearly
            task["style"] = _focused(task["style"], genre)


def _pulled(style: dict, genre: str, names: list[str], rng: np.random.Generator) -> dict:
    """A track's style under the bag effect: the album's, pulled towards a random other genre."""
    other = _STYLES[str(rng.choice([g for g in names if g != genre]))]
    weight = float(rng.uniform(0.0, _TRACK_PULL_MAX))
    params = {}
    for name, (kind, _, _, low, high) in _PARAMS.items():
        a, b = style["params"][name], other["params"][name]
        value = (
            math.exp((1 - weight) * math.log(a) + weight * math.log(b))
            if kind == "log"
            else ((1 - weight) * a + weight * b)
        )
        params[name] = float(np.clip(value, low, high))
    out = {**style, "params": params}
    if rng.random() < _TRACK_BORROW_PROB:
        key = "scale" if rng.random() < 0.5 else "pattern"
        out[key] = other[key]
    return out


def _focused(style: dict, genre: str) -> dict:
    """An informative track's style under the attention effect: the album's, pulled back towards
    its genre's own by ``_FOCUS`` (less crossover and album jitter), with less per-track spread."""
    own = _STYLES[genre]["params"]
    params = {}
    for name, (kind, *_) in _PARAMS.items():
        a, b = style["params"][name], own[name]
        params[name] = (
            math.exp((1 - _FOCUS) * math.log(a) + _FOCUS * math.log(b))
            if kind == "log"
            else ((1 - _FOCUS) * a + _FOCUS * b)
        )
    return {**style, "params": params, "spread": _FOCUS_SPREAD}


def _filler_style(album: dict) -> dict:
    """The attention effect's filler: ``_FILLER``, the same for every album (only the gain is the
    album's), with ``_FOCUS_SPREAD`` per-track spread."""
    return {
        **_FILLER,
        "params": dict(_FILLER["params"]),
        "key": 0,
        "timbre": [1.0] * _N_HARMONICS,
        "gain_db": album["gain_db"],
        "spread": _FOCUS_SPREAD,
    }


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

            run = Parallel(n_jobs=jobs, backend="loky", batch_size=4, return_as="generator_unordered")
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
    kind, key = task.get("rng_key", ("track", track_id))
    salt = 0xA0D10 if kind == "track" else 0xA1B0  # null: the album's draws, the same for each track
    rng = np.random.default_rng(np.random.SeedSequence([task["seed"], salt, int(key)]))
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
        noise = rng.normal(0.0, sigma * style.get("spread", _TRACK_SPREAD))
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


def _note(
    freq: float,
    dur: float,
    p: dict,
    harmonic_gain: np.ndarray,
    sr: int,
    rng: np.random.Generator,
    *,
    rolloff: float | None = None,
) -> np.ndarray:
    """One synthesised note, shape (samples,).

    The note sounds for ``dur`` seconds then releases (40 ms time constant); it is cut once its
    envelope has decayed (``attack + 7 decay``) or 0.2 s after the gate closes. Harmonic notes
    read a band-limited wavetable; inharmonic ones (``inharm`` > 0.002) are summed partials.
    """
    attack = max(p["attack"], 0.002)
    n = max(int(min(dur + 0.2, attack + 7.0 * p["decay"]) * sr), 1)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    k = np.arange(1, _N_HARMONICS + 1, dtype=float)
    stretch = k * np.sqrt(1.0 + p["inharm"] * k**2)  # inharmonic partial ratios
    keep = stretch * freq < min(0.45 * sr, 2.5 * p["cutoff"])
    keep[0] = True
    amp = k ** -(p["rolloff"] if rolloff is None else rolloff) * harmonic_gain
    amp = amp * np.where(k % 2 == 0, 1.0 - 0.9 * p["odd"], 1.0)
    cycles = np.float32(freq) * t + np.float32(rng.random())  # phase in periods
    if p["vibrato"] > 1e-4:
        rate = 5.5 + rng.uniform(-0.5, 0.5)
        cycles -= np.float32(freq * p["vibrato"] / (2 * np.pi * rate)) * np.cos(np.float32(2 * np.pi * rate) * t)
    if p["inharm"] > 0.002:  # inharmonic partials: additive synthesis
        wave = amp[keep].astype(np.float32) @ np.sin(
            np.float32(2 * np.pi) * np.outer(stretch[keep].astype(np.float32), cycles)
        )
    else:  # harmonic: one band-limited period in a wavetable, read at the note's phase
        grid = np.arange(_TABLE) / _TABLE
        table = (amp[keep] @ np.sin(2 * np.pi * np.outer(k[keep], grid))).astype(np.float32)
        wave = table[(cycles * _TABLE).astype(np.int64) & (_TABLE - 1)]
    env = np.exp(-np.maximum(t - np.float32(attack), 0) / np.float32(p["decay"]))
    ramp = min(n, int(attack * sr))
    env[:ramp] *= t[:ramp] / np.float32(attack)
    gate = int(dur * sr)
    if gate < n:  # release after the gate
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
        noise = signal.sosfilt(
            signal.butter(2, [1500, 6000], "bandpass", fs=sr, output="sos"), rng.standard_normal(len(t))
        )
        return (0.8 * noise + 0.4 * np.sin(2 * np.pi * 185 * t)) * np.exp(-t / 0.06)
    t = np.arange(int(0.08 * sr)) / sr
    hi = signal.sosfilt(
        signal.butter(2, min(7000, 0.4 * sr), "highpass", fs=sr, output="sos"), rng.standard_normal(len(t))
    )
    return hi * np.exp(-t / 0.02)


def _voice(n: int, p: dict, tempo: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like stem: a glottal buzz through vowel formants, gated into syllables."""
    out = np.zeros(n)
    f0 = rng.uniform(100, 210)
    rhythmic = p["kick"] + p["snare"] > 0.6  # rap-like: syllables on the grid
    step = 60.0 / tempo / 4  # a 16th note, seconds
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


def synthesize_track(style: dict, *, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
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
    lead = int(rng.uniform(0.5, 1.5) * sr)  # start mid-piece: reverb tails
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
        root = progression[b % len(progression)] if style["scale"] != "chromatic" else int(rng.integers(0, 12))
        start = int(b * bar * sr)
        for v in range(voices):
            f = _midi_hz(pitch(root + 2 * v, -1))
            _add(music, start, 0.5 / voices * _note(f, bar * 0.95, p, timbre, sr, rng))
        if p["bass"] > 0.02:
            for q in range(2):
                f = _midi_hz(pitch(root, -2))
                _add(
                    music,
                    int(start + q * 2 * beat * sr),
                    p["bass"] * 0.8 * _note(f, 1.8 * beat, p, timbre, sr, rng, rolloff=2.5),
                )
        t_note = 0.0
        while t_note < bar - 1e-9:
            if rng.random() > 0.15:  # rests
                degree = int(np.clip(degree + rng.integers(-2, 3), -3, 2 * len(scale)))
                f = _midi_hz(pitch(degree))
                _add(music, int(start + t_note * sr), 0.7 * _note(f, step_dur * 0.9, p, timbre, sr, rng))
            t_note += step_dur
    music *= p["music"] * 0.12 / _rms(music)

    # Percussion stem on a 16th grid, with swing on the off-beat 8ths.
    drums = np.zeros(total)
    kick, snare, hat = _PATTERNS[style["pattern"]]
    if style["pattern"] == "random":
        kick, snare, hat = (list(np.flatnonzero(rng.random(16) < d)) for d in (0.2, 0.15, 0.35))
    hits = {"kick": (kick, 0.6 * p["kick"]), "snare": (snare, 0.45 * p["snare"]), "hat": (hat, 0.2 * p["hat"])}
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
    y = y[lead : lead + n]
    gain = min(1.0, 10 ** ((style["gain_db"] + rng.normal(0, 1.0)) / 20))  # peak <= 0.9: headroom for MP3
    return (0.9 * gain * y / (np.max(np.abs(y)) + 1e-12)).astype(np.float32)
