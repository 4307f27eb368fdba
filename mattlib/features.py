"""Audio features for the MATT study: FMA's 518 statistics and log-mel spectrograms.

Two kinds of features, both extracted in bulk by :func:`extract` into a cache folder:

``kind="fma518"``
    The 518 per-track statistics of FMA's ``features.py`` (Defferrard et al., ISMIR 2017),
    written in FMA's own ``features.csv`` layout (3 header rows ``feature, statistics, number``,
    same names, same column order) so that FMA's published file and ours are interchangeable,
    plus a parquet copy.  Named subsets of them (the paper's Table I) via :data:`FEATURE_SETS`.

``kind="mel"``
    Log-amplitude mel spectrograms (96 × 1360 for 29 s at 12 kHz by default, see
    :class:`MelSettings`) stored as one memory-mapped float16 array ``N × n_mels × T``.
    Three equal implementations (within 1e-3 dB): :func:`log_mel_librosa` (reference),
    :func:`log_mel` (numpy, CPU workers) and :func:`log_mel_torch` (batched, CUDA when present).

Cache layout::

    <cache_dir>/fma518/features.csv       FMA layout (float32 values, '%.10e')
    <cache_dir>/fma518/features.parquet   same table, fast to load
    <cache_dir>/fma518/failures.csv       track_id, path, error
    <cache_dir>/fma518/padded.csv         track_id of clips shorter than one analysis frame
    <cache_dir>/mel-<settings_id>/mel.npy      float16 memmap, N × n_mels × T
    <cache_dir>/mel-<settings_id>/index.csv    row, track_id, padded, status
    <cache_dir>/mel-<settings_id>/failures.csv
    <cache_dir>/<kind folder>/report.json      the last run's :class:`ExtractionReport`
    <cache_dir>/<kind folder>/manifest.json    sizes and checksums (mel.npy: per part of rows),
                                               written last, checked on load
    <cache_dir>/.lock                          one writer per cache

Extraction is parallel over processes, resumable (a killed run restarts where it stopped) and
fault tolerant (a missing, empty, truncated or undecodable file, or a clip whose 518 values are
all undefined, lands in ``failures.csv``). Loading refuses a cache that differs from its manifest
(``extract(..., repair=True)`` / ``matt features --repair`` re-extracts the damaged part).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mattlib.audio import AudioError, audio_info, load_audio
from mattlib.locks import die_with_parent, folder_lock

__all__ = [
    "FMA_FEATURE_SIZES",
    "FMA_STATISTICS",
    "FEATURE_SETS",
    "KINDS",
    "MelSettings",
    "MelStore",
    "ExtractionReport",
    "fma518_columns",
    "fma518_groups",
    "fma518_vector",
    "compute_fma518",
    "feature_set_dim",
    "select_feature_set",
    "mel_filterbank",
    "mel_audio",
    "log_mel",
    "log_mel_librosa",
    "log_mel_torch",
    "compute_mel",
    "mel_dir",
    "load_mel",
    "load_fma518",
    "extract",
    "extract_subset",
    "extract_audio_dir",
    "project_2d",
]

KINDS = ("fma518", "mel")

# ---------------------------------------------------------------------------------------------
# The 518 FMA statistics
# ---------------------------------------------------------------------------------------------

#: Rows per frame of each FMA feature group (each summarised by 7 statistics).
FMA_FEATURE_SIZES: dict[str, int] = {
    "chroma_cens": 12,
    "chroma_cqt": 12,
    "chroma_stft": 12,
    "mfcc": 20,
    "rmse": 1,
    "spectral_bandwidth": 1,
    "spectral_centroid": 1,
    "spectral_contrast": 7,
    "spectral_rolloff": 1,
    "tonnetz": 6,
    "zcr": 1,
}
#: The 7 statistics over time, as named in FMA's header (kurtosis is the excess kurtosis).
FMA_STATISTICS = ("mean", "std", "skew", "kurtosis", "median", "min", "max")

# FMA's feature code leaves ``sr`` at librosa's default (22050 Hz) in the spectral-shape calls
# (centroid, bandwidth, rolloff, contrast, chroma_stft) although the audio is read at its native
# rate (44.1 kHz on FMA), so those frequencies are on a 22050 Hz scale.  We keep that quirk:
# the values are then interchangeable with FMA's features.csv.
_FMA_SPECTRAL_SR = 22050
_FMA_HOP = 512
_FMA_N_FFT = 2048


def fma518_columns() -> pd.MultiIndex:
    """The 518 columns of FMA's ``features.csv``, in FMA's (lexicographically sorted) order.

    Returns
    -------
    pandas.MultiIndex
        Levels ``(feature, statistics, number)``; ``number`` is a 2-digit string ``'01'..``.
    """
    tuples = [
        (name, stat, f"{i + 1:02d}")
        for name, size in FMA_FEATURE_SIZES.items()
        for stat in FMA_STATISTICS
        for i in range(size)
    ]
    return pd.MultiIndex.from_tuples(sorted(tuples), names=["feature", "statistics", "number"])


def _column_positions() -> dict[tuple[str, str], np.ndarray]:
    cols = fma518_columns()
    pos: dict[tuple[str, str], list[int]] = {}
    for j, (name, stat, _num) in enumerate(cols):  # numbers are sorted within (name, stat)
        pos.setdefault((name, stat), []).append(j)
    return {k: np.asarray(v) for k, v in pos.items()}


_POSITIONS = _column_positions()


def _summary(x: np.ndarray) -> dict[str, np.ndarray]:
    """The 7 statistics of each row of ``x`` (k, T), computed in float64.

    Same definitions as numpy/scipy defaults: population std (ddof=0), biased skewness and
    excess (Fisher) kurtosis, NaN where a row is constant (as scipy.stats).
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1)
    d = x - mean[:, None]
    d2 = d * d
    m2 = d2.mean(axis=1)
    m3 = (d2 * d).mean(axis=1)
    m4 = (d2 * d2).mean(axis=1)
    constant = m2 <= (np.finfo(np.float64).resolution * mean) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(constant, np.nan, m3 / m2**1.5)
        kurt = np.where(constant, np.nan, m4 / m2**2 - 3.0)
    return {
        "mean": mean,
        "std": np.sqrt(m2),
        "skew": skew,
        "kurtosis": kurt,
        "median": np.median(x, axis=1),
        "min": x.min(axis=1),
        "max": x.max(axis=1),
    }


def _spectral_shape(S: np.ndarray, *, sr: int, n_fft: int, roll_percent: float = 0.85):
    """Spectral centroid, bandwidth (p=2) and rolloff of a magnitude spectrogram.

    Same definitions as ``librosa.feature.spectral_{centroid,bandwidth,rolloff}(S=S, sr=sr)``
    (each frame normalised to unit sum; silent frames give 0), computed with three matrix
    products instead of broadcasting, which is ~5× faster.

    Returns three arrays of shape (1, T), in Hz.
    """
    freq = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    S64 = S.astype(np.float64)
    total = S64.sum(axis=0)
    nz = total > np.finfo(S.dtype).tiny  # librosa leaves (near-)silent frames unnormalised
    denom = np.where(nz, total, 1.0)
    m1 = freq @ S64 / denom
    m2 = (freq * freq) @ S64 / denom
    mass = np.where(nz, 1.0, total)  # sum of the normalised frame
    var = m2 - 2.0 * m1 * m1 + m1 * m1 * mass
    bandwidth = np.sqrt(np.maximum(var, 0.0))
    cums = np.cumsum(S, axis=0)
    reached = cums >= roll_percent * cums[-1]
    rolloff = freq[np.argmax(reached, axis=0)]
    return m1[None].astype(S.dtype), bandwidth[None].astype(S.dtype), rolloff[None].astype(S.dtype)


def _estimate_tuning(S: np.ndarray, *, sr: float, n_fft: int, bins_per_octave: int = 12) -> float:
    """``librosa.estimate_tuning(S=S, sr=sr, n_fft=n_fft, bins_per_octave=...)``, same result.

    librosa runs its peak picking (``piptrack``: parabolic interpolation, local maxima above 10 %
    of the frame maximum) on all frequency bins and then keeps 150-4000 Hz; we compute the same
    quantities on those bins only (± one neighbour), with the same float32/float64 arithmetic, so
    the estimated tuning is identical and 4-5× cheaper.  Falls back to librosa at the edges.
    """
    import librosa

    S = np.abs(S)
    freqs = np.linspace(0.0, float(sr) / 2.0, 1 + n_fft // 2)
    rows = np.flatnonzero((150.0 <= freqs) & (freqs < min(4000.0, float(sr) / 2.0)))
    if rows.size == 0 or rows[0] < 1 or rows[-1] + 1 >= S.shape[0] or S.dtype != np.float32:
        return float(librosa.estimate_tuning(S=S, sr=sr, n_fft=n_fft, bins_per_octave=bins_per_octave))
    lo, hi = rows[0], rows[-1] + 1
    x = S[lo - 1 : hi + 1]  # the band plus one neighbour each side
    xm, x0, xp = x[:-2], x[1:-1], x[2:]
    # numba stencil of librosa: float32 sums, float64 once multiplied by a Python scalar
    a = (xp + xm).astype(np.float64) - 2.0 * x0.astype(np.float64)
    b = (xp - xm).astype(np.float64) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(np.float32)
    avg = (xp - xm) / 2.0  # np.gradient in the interior, float32
    dskew = 0.5 * avg * shift
    ref_value = 0.1 * S.max(axis=0)
    xt = x * (x > ref_value)
    peak = (xt[1:-1] > xt[:-2]) & (xt[1:-1] >= xt[2:])
    r, t = np.nonzero(peak)
    if r.size == 0:
        return 0.0  # as librosa (which also warns)
    pitch = ((r + lo) + shift[r, t]).astype(np.float64) * float(sr) / n_fft
    pitch = pitch.astype(np.float32)
    mag = (x0 + dskew)[r, t]
    keep = pitch > 0
    threshold = np.median(mag[keep]) if keep.any() else 0.0
    sel = pitch[(mag >= threshold) & keep]
    if sel.size == 0:
        return 0.0
    return float(librosa.pitch_tuning(sel, resolution=0.01, bins_per_octave=bins_per_octave))


def fma518_groups(y: np.ndarray, *, sr: int, legacy: bool = False) -> dict[str, np.ndarray]:
    """Frame-wise FMA features of one clip, before the statistics.

    Follows FMA's ``features.py``: zero-crossing rate (frames of 2048, hop 512); |CQT| (hop 512,
    84 bins = 7 octaves × 12, tuning estimated) → chroma_cqt, chroma_cens, and tonnetz from
    chroma_cens; |STFT| (n_fft 2048, hop 512, reflect padding) → chroma_stft (from the power),
    rms, spectral centroid, bandwidth, rolloff, contrast (6 bands), and 20 MFCCs from a 128-band
    mel spectrogram of the power via ``power_to_db``.  The STFT is computed once.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono audio at its native rate (FMA does not resample).
    sr : int
        Sampling rate of ``y`` in Hz.
    legacy : bool
        ``False`` (default) reproduces FMA's code run with librosa >= 0.7, which is what the
        project's reference file holds: chroma folded with librosa's default 36 bins/octave
        (FMA does not pass ``bins_per_octave``) and ``rms`` with librosa's Parseval scaling.
        ``True`` mimics the librosa 0.5 call semantics under which FMA's published 2017
        ``features.csv`` was computed (chroma at 12 bins/octave, ``rmse`` = sqrt of the mean
        power over frequency bins).  Not checked against a reference.

    Returns
    -------
    dict
        Group name → array (k, T) with k as in :data:`FMA_FEATURE_SIZES`.
    """
    import librosa

    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y must be a non-empty 1-D array, got shape {y.shape}")
    out: dict[str, np.ndarray] = {}
    out["zcr"] = librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=_FMA_HOP)

    # librosa.cqt(tuning=None) estimates the tuning on |STFT(y)| (n_fft 2048, hop 512, zero
    # padding); we do the same, with the faster, identical estimator
    S0 = np.abs(librosa.stft(y, n_fft=_FMA_N_FFT, hop_length=_FMA_HOP, pad_mode="constant"))
    tuning = _estimate_tuning(S0, sr=sr, n_fft=_FMA_N_FFT, bins_per_octave=12)
    del S0
    C = np.abs(librosa.cqt(y, sr=sr, hop_length=_FMA_HOP, bins_per_octave=12, n_bins=7 * 12, tuning=tuning))
    chroma_kw = dict(n_chroma=12, n_octaves=7)
    if legacy:
        chroma_kw["bins_per_octave"] = 12
    out["chroma_cqt"] = librosa.feature.chroma_cqt(C=C, **chroma_kw)
    cens = librosa.feature.chroma_cens(C=C, **chroma_kw)
    out["chroma_cens"] = cens
    out["tonnetz"] = librosa.feature.tonnetz(chroma=cens)
    del C

    S = np.abs(librosa.stft(y, n_fft=_FMA_N_FFT, hop_length=_FMA_HOP, pad_mode="reflect"))
    P = S * S
    # chroma_stft(tuning=None) estimates the tuning on the power spectrogram it is given
    tuning = _estimate_tuning(P, sr=_FMA_SPECTRAL_SR, n_fft=_FMA_N_FFT, bins_per_octave=12)
    out["chroma_stft"] = librosa.feature.chroma_stft(S=P, n_chroma=12, sr=_FMA_SPECTRAL_SR, tuning=tuning)
    if legacy:
        out["rmse"] = np.sqrt(np.mean(P, axis=0, keepdims=True))
    else:
        out["rmse"] = librosa.feature.rms(S=S, frame_length=_FMA_N_FFT)
    c, b, r = _spectral_shape(S, sr=_FMA_SPECTRAL_SR, n_fft=_FMA_N_FFT)
    out["spectral_centroid"], out["spectral_bandwidth"], out["spectral_rolloff"] = c, b, r
    out["spectral_contrast"] = librosa.feature.spectral_contrast(S=S, sr=_FMA_SPECTRAL_SR, n_bands=6)
    mel = librosa.feature.melspectrogram(S=P, sr=sr)  # 128 bands, fmax = sr / 2
    out["mfcc"] = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)
    return out


def fma518_vector(y: np.ndarray, *, sr: int, legacy: bool = False) -> np.ndarray:
    """The 518 FMA statistics of one clip.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono audio at its native rate.
    sr : int
        Sampling rate in Hz.
    legacy : bool
        See :func:`fma518_groups`.

    Returns
    -------
    np.ndarray, float32, shape (518,)
        In the column order of :func:`fma518_columns`.
    """
    vec = np.full(518, np.nan, dtype=np.float64)
    for name, x in fma518_groups(y, sr=sr, legacy=legacy).items():
        if x.shape[0] != FMA_FEATURE_SIZES[name]:
            raise RuntimeError(f"{name}: expected {FMA_FEATURE_SIZES[name]} rows, got {x.shape[0]}")
        for stat, values in _summary(x).items():
            vec[_POSITIONS[name, stat]] = values
    return vec.astype(np.float32)


def compute_fma518(path: str | os.PathLike, *, legacy: bool = False) -> pd.Series:
    """The 518 FMA statistics of one audio file (decoded mono at its native rate).

    Returns
    -------
    pandas.Series, float32, length 518
        Indexed by :func:`fma518_columns`; ``attrs["padded"]`` is True for a clip shorter than
        one analysis frame (2048 samples), whose frames are mostly padding.

    Raises
    ------
    AudioError
        The file cannot be decoded.
    """
    y, sr = load_audio(path, sr=None, mono=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns on very short clips (n_fft > len)
        vec = fma518_vector(y, sr=sr, legacy=legacy)
    series = pd.Series(vec, index=fma518_columns(), name=Path(path).stem)
    series.attrs["padded"] = len(y) < _FMA_N_FFT
    return series


# ---------------------------------------------------------------------------------------------
# Feature sets (paper, Table I)
# ---------------------------------------------------------------------------------------------

#: Named feature sets of the paper's Table I → FMA feature groups.  ``chroma`` is chroma_cens
#: (84 dims as in Table I; CENS is the smoothed, energy-normalised variant, the most robust to
#: dynamics and timbre).  ``all`` is the full 518 (Table I's "all (1-9)" row has 518 dims, i.e.
#: it also counts chroma_cqt and chroma_stft, which the single sets 1-9 leave out).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "chroma": ("chroma_cens",),
    "tonnetz": ("tonnetz",),
    "mfcc": ("mfcc",),
    "spectral_centroid": ("spectral_centroid",),
    "spectral_bandwidth": ("spectral_bandwidth",),
    "spectral_contrast": ("spectral_contrast",),
    "spectral_rolloff": ("spectral_rolloff",),
    "rms_energy": ("rmse",),
    "zero_crossing": ("zcr",),
    "mfcc+contrast": ("mfcc", "spectral_contrast"),
    "mfcc+contrast+centroid": ("mfcc", "spectral_contrast", "spectral_centroid"),
    "all": tuple(FMA_FEATURE_SIZES),
}
_SET_ALIASES = {"all (1-9)": "all", "all(1-9)": "all", "rms": "rms_energy", "zcr": "zero_crossing"}


def _set_groups(name: str) -> tuple[str, ...]:
    if not isinstance(name, str):
        raise ValueError(f"feature set name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _SET_ALIASES.get(key, key)
    if key not in FEATURE_SETS:
        valid = ", ".join(list(FEATURE_SETS) + ["all (1-9)"])
        raise ValueError(f"unknown feature set {name!r}; valid: {valid}")
    return FEATURE_SETS[key]


def feature_set_dim(name: str) -> int:
    """Number of dimensions of a named feature set (e.g. 84 for ``chroma``, 518 for ``all``)."""
    return sum(FMA_FEATURE_SIZES[g] * len(FMA_STATISTICS) for g in _set_groups(name))


def select_feature_set(features: pd.DataFrame, name: str) -> pd.DataFrame:
    """Columns of a named feature set, in FMA's column order.

    Parameters
    ----------
    features : pandas.DataFrame
        FMA layout: 3-level columns ``(feature, statistics, number)``, e.g. from
        :func:`load_fma518` or ``mattlib.fma.load_features``.
    name : str
        A key of :data:`FEATURE_SETS` (or ``"all (1-9)"``).

    Returns
    -------
    pandas.DataFrame
        ``(n_tracks, feature_set_dim(name))``.
    """
    groups = _set_groups(name)
    if not isinstance(features.columns, pd.MultiIndex) or features.columns.nlevels != 3:
        raise ValueError("features must have 3-level (feature, statistics, number) columns")
    level0 = features.columns.get_level_values(0)
    missing = [g for g in groups if g not in set(level0)]
    if missing:
        raise ValueError(f"feature set {name!r} needs groups missing from the table: {', '.join(missing)}")
    out = features.loc[:, level0.isin(groups)]
    expected = feature_set_dim(name)
    if out.shape[1] != expected:
        raise ValueError(f"feature set {name!r}: expected {expected} columns, table has {out.shape[1]}")
    return out


# ---------------------------------------------------------------------------------------------
# Log-mel spectrograms
# ---------------------------------------------------------------------------------------------

_CROPS = ("start", "centre")


@dataclasses.dataclass(frozen=True)
class MelSettings:
    """Settings of the log-mel spectrograms.

    Defaults follow the paper, which takes Choi et al.'s front end ("Convolutional recurrent
    neural networks for music classification", 2017): audio resampled to 12 kHz, 29 s per clip,
    96 mel bands, STFT of ``n_fft=512`` samples (42.7 ms) with hop 256 (21.3 ms) → 96 × 1360.

    Parameters
    ----------
    sr : int
        Sampling rate in Hz the audio is resampled to (soxr HQ).
    seconds : float
        Clip length in seconds; longer audio is cropped, shorter is zero-padded (flagged).
    crop : {"start", "centre"}
        Which ``seconds`` of a longer clip to keep (``"center"`` is accepted).
    n_mels : int
        Mel bands (Slaney mel scale and area normalisation, librosa's default).
    hop_length, n_fft : int
        STFT hop and window (Hann) in samples; frames are centred (zero padding).
    fmin, fmax : float
        Mel band limits in Hz (``fmax=None``: sr / 2).
    ref : float
        Reference power of ``power_to_db``: ``10 log10(S / ref)``.  A fixed ``1.0`` (as Choi et
        al.) keeps absolute levels comparable across clips; ``ref=np.max`` would not.
    top_db : float or None
        Floor at ``max - top_db`` per clip (librosa's default 80 dB); ``None`` for no floor.
    """

    sr: int = 12000
    seconds: float = 29.0
    crop: str = "start"
    n_mels: int = 96
    hop_length: int = 256
    n_fft: int = 512
    fmin: float = 0.0
    fmax: float | None = None
    ref: float = 1.0
    top_db: float | None = 80.0

    def __post_init__(self):
        crop = "centre" if self.crop == "center" else self.crop
        if crop not in _CROPS:
            raise ValueError(f"crop must be one of {', '.join(_CROPS)}, got {self.crop!r}")
        object.__setattr__(self, "crop", crop)
        for field in ("sr", "n_mels", "hop_length", "n_fft"):
            v = getattr(self, field)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{field} must be a positive int, got {v!r}")
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds!r}")
        if self.fmin < 0 or (self.fmax is not None and not self.fmin < self.fmax <= self.sr / 2):
            raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={self.fmax}")
        if not self.ref > 0:
            raise ValueError(f"ref must be > 0, got {self.ref!r}")
        if self.top_db is not None and not self.top_db > 0:
            raise ValueError(f"top_db must be > 0 or None, got {self.top_db!r}")

    @property
    def n_samples(self) -> int:
        """Samples per clip after cropping/padding."""
        return int(round(self.seconds * self.sr))

    @property
    def n_frames(self) -> int:
        """Frames per clip (centred STFT): ``1 + n_samples // hop_length``."""
        return 1 + self.n_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_mels, n_frames)`` of one spectrogram."""
        return (self.n_mels, self.n_frames)

    @property
    def settings_id(self) -> str:
        """Folder-safe id of all settings, e.g. ``sr12000-n96-hop256-fft512-29s-start``.

        Settings left at their defaults beyond the first six are omitted; any other value adds
        a suffix, so changed settings never share a cache folder.
        """
        sid = f"sr{self.sr}-n{self.n_mels}-hop{self.hop_length}-fft{self.n_fft}-{self.seconds:g}s-{self.crop}"
        if self.fmin != 0.0:
            sid += f"-fmin{self.fmin:g}"
        if self.fmax is not None:
            sid += f"-fmax{self.fmax:g}"
        if self.ref != 1.0:
            sid += f"-ref{self.ref:g}"
        if self.top_db != 80.0:
            sid += "-topdbNone" if self.top_db is None else f"-topdb{self.top_db:g}"
        return sid

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=8)
def mel_filterbank(settings: MelSettings) -> np.ndarray:
    """librosa's mel filterbank for ``settings`` (Slaney scale and norm), cached, read-only.

    Returns
    -------
    np.ndarray, float32, shape (n_mels, 1 + n_fft // 2)
    """
    import librosa

    fb = librosa.filters.mel(
        sr=settings.sr, n_fft=settings.n_fft, n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax
    ).astype(np.float32)
    fb.flags.writeable = False
    return fb


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    # periodic Hann, as librosa's get_window("hann", n_fft, fftbins=True)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    w.flags.writeable = False
    return w


def mel_audio(path: str | os.PathLike, settings: MelSettings) -> tuple[np.ndarray, bool]:
    """Decode, resample and crop/pad one clip for the mel spectrogram.

    Returns
    -------
    y : np.ndarray, float32, shape (settings.n_samples,)
    padded : bool
        The clip was shorter than ``settings.seconds`` and was zero-padded at the end.
    """
    offset = 0.0
    if settings.crop == "centre":
        duration = audio_info(path)["duration"]
        offset = max(0.0, (duration - settings.seconds) / 2.0)
    y, _ = load_audio(path, sr=settings.sr, mono=True, offset=offset, duration=settings.seconds)
    n = settings.n_samples
    padded = y.shape[0] < n
    if padded:
        y = np.pad(y, (0, n - y.shape[0]))
    return np.ascontiguousarray(y[:n]), bool(padded)


def log_mel(y: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Log-mel spectrogram, numpy/scipy implementation used by the CPU workers.

    Same definition as :func:`log_mel_librosa` (centred frames with zero padding, periodic Hann
    window, power spectrum, librosa's mel filterbank, ``power_to_db``), computed in float32 with
    a cached filterbank, ~3× faster; equal to librosa within 1e-3 dB.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono audio at ``settings.sr``; ``n >= n_fft // 2 + 1``.

    Returns
    -------
    np.ndarray, float32, shape (n_mels, 1 + n // hop_length), dB
    """
    import scipy.fft

    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    n_fft, hop = settings.n_fft, settings.hop_length
    yp = np.pad(y, n_fft // 2)
    if yp.shape[0] < n_fft:
        raise ValueError(f"audio too short for n_fft={n_fft}: {y.shape[0]} samples")
    n_frames = 1 + (yp.shape[0] - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        yp, shape=(n_frames, n_fft), strides=(yp.strides[0] * hop, yp.strides[0]), writeable=False
    )
    X = scipy.fft.rfft(frames * _hann(n_fft), axis=-1)  # (T, F) complex64
    power = X.real * X.real + X.imag * X.imag
    mel = mel_filterbank(settings) @ power.T  # (n_mels, T)
    db = 10.0 * np.log10(np.maximum(mel, np.float32(1e-10)))
    db -= np.float32(10.0 * np.log10(max(1e-10, settings.ref)))
    if settings.top_db is not None:
        db = np.maximum(db, db.max() - np.float32(settings.top_db))
    return db.astype(np.float32, copy=False)


def log_mel_librosa(y: np.ndarray, settings: MelSettings) -> np.ndarray:
    """Log-mel spectrogram with librosa (the reference implementation).

    ``power_to_db(melspectrogram(y, sr, n_fft, hop_length, n_mels, fmin, fmax), ref, top_db)``.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono audio at ``settings.sr``.

    Returns
    -------
    np.ndarray, float32, shape (n_mels, 1 + n // hop_length), dB
    """
    import librosa

    M = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float32),
        sr=settings.sr,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        n_mels=settings.n_mels,
        fmin=settings.fmin,
        fmax=settings.fmax,
        power=2.0,
    )
    return librosa.power_to_db(M, ref=settings.ref, amin=1e-10, top_db=settings.top_db).astype(np.float32)


def log_mel_torch(y, settings: MelSettings, *, device=None, fb: np.ndarray | None = None):
    """Batched log-mel spectrograms with torch (``torch.stft`` + librosa's mel filterbank).

    Equal to :func:`log_mel_librosa` within 1e-3 dB; runs on CUDA when ``device`` is a GPU.  Computed
    in float64, so the GPU result does not depend on float32 FFT rounding near the dB floor.

    Parameters
    ----------
    y : np.ndarray or torch.Tensor, shape (n,) or (batch, n)
        Mono audio at ``settings.sr``.
    settings : MelSettings
    device : str or torch.device, optional
        Default: ``"cuda"`` if available, else ``"cpu"``.
    fb : np.ndarray, optional
        Precomputed :func:`mel_filterbank`.

    Returns
    -------
    torch.Tensor, float32, shape (n_mels, T) or (batch, n_mels, T), dB, on ``device``
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.as_tensor(y).to(device=device, dtype=torch.float64)
    single = x.ndim == 1
    if single:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"y must have shape (n,) or (batch, n), got {tuple(x.shape)}")
    fb_t = torch.as_tensor(mel_filterbank(settings) if fb is None else fb).to(device=device, dtype=torch.float64)
    window = torch.hann_window(settings.n_fft, periodic=True, dtype=torch.float64, device=device)
    X = torch.stft(
        x,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.n_fft,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = X.real.square() + X.imag.square()  # (B, F, T)
    mel = torch.matmul(fb_t, power)  # (B, n_mels, T)
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10)) - 10.0 * np.log10(max(1e-10, settings.ref))
    if settings.top_db is not None:
        floor = db.amax(dim=(-2, -1), keepdim=True) - settings.top_db
        db = torch.maximum(db, floor)
    db = db.to(torch.float32)
    return db[0] if single else db


def compute_mel(path: str | os.PathLike, settings: MelSettings | None = None) -> tuple[np.ndarray, bool]:
    """Log-mel spectrogram of one file (:func:`log_mel`): ``(array (n_mels, T) float32, padded)``."""
    settings = settings or MelSettings()
    y, padded = mel_audio(path, settings)
    return log_mel(y, settings), padded


# ---------------------------------------------------------------------------------------------
# Small IO helpers
# ---------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` then rename tmp onto ``path`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def _write_failures(path: Path, failures: list[tuple[int, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(failures, columns=["track_id", "path", "error"]).sort_values("track_id")
    _atomic_write(path, lambda p: df.to_csv(p, index=False))
    return df


def _read_padded(folder: Path) -> list[int]:
    """Track ids of the fma518 table whose clip was shorter than one analysis frame."""
    path = folder / "padded.csv"
    return pd.read_csv(path)["track_id"].astype(np.int64).tolist() if path.exists() else []


def _read_failures(folder: Path) -> pd.DataFrame:
    path = folder / "failures.csv"
    if not path.exists():
        return pd.DataFrame(columns=["track_id", "path", "error"])
    return pd.read_csv(path, dtype={"track_id": np.int64, "path": str, "error": str})


def _write_features(folder: Path, df: pd.DataFrame) -> None:
    df = df.sort_index().astype(np.float32)
    df.index.name = "track_id"
    df.columns = fma518_columns()
    _atomic_write(folder / "features.csv", lambda p: df.to_csv(p, float_format="%.10e"))
    _atomic_write(folder / "features.parquet", lambda p: df.to_parquet(p))


def _read_features_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, index_col=0, header=[0, 1, 2])
    df.index = df.index.astype(np.int64)
    df.index.name = "track_id"
    return df.astype(np.float32)


def _read_table(folder: Path) -> pd.DataFrame:
    """The merged fma518 table: the parquet copy when it is at least as new as the csv."""
    csv, pq = folder / "features.csv", folder / "features.parquet"
    if pq.exists() and pq.stat().st_mtime_ns >= csv.stat().st_mtime_ns:
        df = pd.read_parquet(pq)
        df.columns = fma518_columns()
        df.index = df.index.astype(np.int64)
        df.index.name = "track_id"
        return df.astype(np.float32)
    return _read_features_csv(csv)


MANIFEST = "manifest.json"
_BLOCK_ROWS = 256  # mel.npy rows per checksum part


def _sha1_file(path: Path) -> str:
    import hashlib

    sha = hashlib.sha1()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _mel_parts(mel: np.ndarray) -> list[str]:
    """SHA-1 of each block of ``_BLOCK_ROWS`` rows of ``mel.npy``."""
    import hashlib

    return [hashlib.sha1(np.ascontiguousarray(mel[i:i + _BLOCK_ROWS]).tobytes()).hexdigest()
            for i in range(0, len(mel), _BLOCK_ROWS)]


def _write_manifest(folder: Path, files: list[str], *, mel: np.ndarray | None = None) -> None:
    """Written last: sizes and checksums of ``files`` (and of ``mel.npy`` per part of rows)."""
    entry = {name: {"bytes": (folder / name).stat().st_size, "sha1": _sha1_file(folder / name)} for name in files}
    manifest: dict[str, Any] = {"files": entry}
    if mel is not None:
        manifest["mel"] = {"bytes": (folder / "mel.npy").stat().st_size, "shape": list(mel.shape),
                           "dtype": str(mel.dtype), "block_rows": _BLOCK_ROWS, "parts": _mel_parts(mel)}
    _write_json(folder / MANIFEST, manifest)


class DamagedCacheError(RuntimeError):
    """A feature cache is incomplete or does not match its manifest; the message names the file
    and the fix."""


def _fix(folder: Path) -> str:
    return (f"run `matt features ... --repair --out {folder.parent}` (or the notebook 02 extraction) "
            "to re-extract what is damaged")


def _check_manifest(folder: Path) -> dict:
    """Compare the cache folder with its manifest; raise :class:`DamagedCacheError` on a mismatch."""
    path = folder / MANIFEST
    if not path.exists():
        raise DamagedCacheError(f"{folder}: no {MANIFEST} (the extraction did not finish, or the cache "
                                f"predates manifests); {_fix(folder)}")
    manifest = json.loads(path.read_text())
    for name, want in manifest["files"].items():
        file = folder / name
        if not file.exists() or file.stat().st_size != want["bytes"] or _sha1_file(file) != want["sha1"]:
            raise DamagedCacheError(f"{file}: damaged (size or checksum differs from {MANIFEST}); {_fix(folder)}")
    if "mel" in manifest:
        want = manifest["mel"]
        file = folder / "mel.npy"
        if not file.exists() or file.stat().st_size != want["bytes"]:
            raise DamagedCacheError(f"{file}: cut short or replaced ({file.stat().st_size if file.exists() else 0}"
                                    f" of {want['bytes']} bytes); {_fix(folder)}")
    return manifest


def _damaged_mel_rows(folder: Path, manifest: dict) -> list[int]:
    """Rows of ``mel.npy`` in parts whose checksum differs from the manifest."""
    mel = np.load(folder / "mel.npy", mmap_mode="r")
    want, step = manifest["mel"]["parts"], manifest["mel"]["block_rows"]
    bad = [i for i, (a, b) in enumerate(zip(_mel_parts(mel), want)) if a != b]
    return [r for i in bad for r in range(i * step, min((i + 1) * step, len(mel)))]


# ---------------------------------------------------------------------------------------------
# Loading the cache
# ---------------------------------------------------------------------------------------------


def _warn_failures(n_failed: int, n_total: int, folder: Path, stacklevel: int = 3) -> None:
    if n_failed:
        warnings.warn(
            f"{n_failed} of {n_total} tracks failed feature extraction and are excluded "
            f"(see {folder / 'failures.csv'})",
            stacklevel=stacklevel,
        )


def load_fma518(cache_dir: str | os.PathLike) -> pd.DataFrame:
    """Load the extracted 518 FMA statistics.

    Parameters
    ----------
    cache_dir : str or Path
        The cache folder given to :func:`extract` (holding ``fma518/``), or ``fma518/`` itself.

    Returns
    -------
    pandas.DataFrame, float32, (n_tracks, 518)
        Index ``track_id``; FMA's 3-level columns.  Failed tracks are absent (a warning says how
        many).
    """
    folder = Path(cache_dir)
    if folder.name != "fma518" and (folder / "fma518").is_dir():
        folder = folder / "fma518"
    csv = folder / "features.csv"
    if not csv.exists():
        raise FileNotFoundError(
            f"no extracted features in {folder} (features.csv missing); run "
            "mattlib.features.extract(..., kind='fma518') or `matt features --kind fma518`"
        )
    _check_manifest(folder)
    df = _read_table(folder)
    failures = _read_failures(folder)
    failed = set(failures["track_id"]) - set(df.index)
    _warn_failures(len(failed), len(df) + len(failed), folder)
    return df


@dataclasses.dataclass
class MelStore:
    """Extracted log-mel spectrograms (see :func:`load_mel`).

    Attributes
    ----------
    mel : np.memmap, float16, shape (N, n_mels, T)
        All rows, failed ones included (zeros); read-only memory map.
    index : pandas.DataFrame
        One row per successfully extracted track, indexed by ``track_id``, columns ``row`` (into
        ``mel``) and ``padded`` (bool).
    failures : pandas.DataFrame
        ``track_id, path, error``.
    settings : MelSettings
    path : Path
    """

    mel: np.ndarray
    index: pd.DataFrame
    failures: pd.DataFrame
    settings: MelSettings
    path: Path

    @property
    def track_ids(self) -> np.ndarray:
        return self.index.index.to_numpy()

    @property
    def padded(self) -> np.ndarray:
        return self.index["padded"].to_numpy(bool)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        """The i-th good track's spectrogram, (n_mels, T) float16 (a view into the memmap)."""
        return self.mel[int(self.index["row"].iat[i])]

    def get(self, track_id: int) -> np.ndarray:
        """Spectrogram of a track id, (n_mels, T) float16; KeyError if absent or failed."""
        return self.mel[int(self.index.at[int(track_id), "row"])]


def mel_dir(cache_dir: str | os.PathLike, settings: MelSettings | None = None) -> Path:
    """``<cache_dir>/mel-<settings_id>``."""
    return Path(cache_dir) / f"mel-{(settings or MelSettings()).settings_id}"


def load_mel(directory: str | os.PathLike, *, settings: MelSettings | None = None, verify: bool = True) -> MelStore:
    """Open extracted log-mel spectrograms (memory-mapped, nothing is read into RAM).

    Parameters
    ----------
    directory : str or Path
        A ``mel-<settings_id>`` folder, or the cache folder together with ``settings``.
    settings : MelSettings, optional
        Used to find the folder when ``directory`` is the cache folder.
    verify : bool, default True
        Compare every part of ``mel.npy`` with the checksums of ``manifest.json`` (reads the
        whole file once: about 6.5 GB on FMA medium at the paper's settings). The sizes and the
        other files are always checked.

    Returns
    -------
    MelStore
        Failed tracks are excluded from its index (a warning says how many).
    """
    folder = Path(directory)
    if not (folder / "layout.json").exists() and settings is not None:
        folder = mel_dir(folder, settings)
    index_path = folder / "index.csv"
    if not index_path.exists():
        raise FileNotFoundError(
            f"{folder}: no complete mel extraction (index.csv is written last); run "
            "mattlib.features.extract(..., kind='mel') to create or resume it"
        )
    manifest = _check_manifest(folder)
    layout = json.loads((folder / "layout.json").read_text())
    st = MelSettings(**layout["settings"])
    mel = np.load(folder / "mel.npy", mmap_mode="r")
    if verify and _damaged_mel_rows(folder, manifest):
        raise DamagedCacheError(f"{folder / 'mel.npy'}: {len(_damaged_mel_rows(folder, manifest))} rows differ "
                                f"from {MANIFEST}; {_fix(folder)}")
    index = pd.read_csv(index_path)
    ok = index[index["status"] == "ok"].set_index("track_id")[["row", "padded"]]
    ok["padded"] = ok["padded"].astype(bool)
    _warn_failures(int((index["status"] != "ok").sum()), len(index), folder)
    return MelStore(mel=mel, index=ok, failures=_read_failures(folder), settings=st, path=folder)


# ---------------------------------------------------------------------------------------------
# Bulk extraction
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExtractionReport:
    """What one :func:`extract` run did.

    ``done``: computed in this run; ``reused``: already in the cache; ``failed``: could not be
    decoded (see ``failures.csv``); ``padded``: short clips zero-padded (mel: shorter than
    ``seconds``; fma518: shorter than one 2048-sample frame, listed in ``padded.csv``), counted
    over all stored tracks.
    """

    kind: str
    n_tracks: int
    done: int
    reused: int
    failed: int
    padded: int
    seconds: float
    jobs: int
    device: str
    paths: dict[str, str]

    @property
    def clips_per_s(self) -> float:
        """Tracks computed (``done``) per second of wall time (failures and reuse are quick)."""
        return self.done / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["clips_per_s"] = self.clips_per_s
        return d

    def __str__(self) -> str:
        return (
            f"{self.kind}: {self.n_tracks} tracks: {self.done} computed, {self.reused} reused, "
            f"{self.failed} failed, {self.padded} padded; {self.seconds:.1f} s "
            f"({self.clips_per_s:.2f} clips/s, jobs={self.jobs}, {self.device})"
        )


def _normalise_tracks(tracks) -> dict[int, Path]:
    if isinstance(tracks, pd.Series):
        items = tracks.items()
    elif isinstance(tracks, Mapping):
        items = tracks.items()
    elif isinstance(tracks, Iterable) and not isinstance(tracks, (str, bytes, os.PathLike)):
        items = tracks
    else:
        raise TypeError("tracks must be a mapping track_id -> path (or a Series, or (id, path) pairs)")
    out: dict[int, Path] = {}
    for item in items:
        try:
            tid, path = item
        except (TypeError, ValueError):
            raise TypeError(f"tracks: expected (track_id, path) pairs, got {item!r}") from None
        if isinstance(tid, bool) or not isinstance(tid, (int, np.integer)) or tid < 0:
            raise ValueError(f"track ids must be non-negative ints, got {tid!r}")
        if int(tid) in out:
            raise ValueError(f"duplicate track id {tid}")
        out[int(tid)] = Path(path)
    return dict(sorted(out.items()))


def _single_blas_thread():
    """Context: one BLAS/OpenMP thread.  Our matrix products are small (e.g. 96 × 257 @ 257 ×
    1360); multi-threaded OpenBLAS spends more time synchronising than computing (2× slower on a
    busy 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except Exception:  # pragma: no cover - threadpoolctl missing
        import contextlib

        return contextlib.nullcontext()


def _init_worker(parent: int) -> None:
    # one BLAS/OpenMP thread per worker process: `jobs` processes already fill the cores
    _single_blas_thread()
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker must not inherit matt's handler
    die_with_parent(parent)  # a SIGKILLed parent leaves no worker behind


# -- worker functions (module level: picklable) --


def _work_fma518(items: list[tuple[int, str]]) -> list[tuple[int, Any, bool, str | None]]:
    out = []
    for tid, path in items:
        try:
            series = compute_fma518(path)
            values = series.to_numpy()
            if not np.isfinite(values).any():  # a row of undefined values is a failure, not a result
                raise ValueError("no finite feature value (all 518 undefined)")
            out.append((tid, values, bool(series.attrs.get("padded", False)), None))
        except Exception as exc:  # never stop the run: record and continue
            out.append((tid, None, False, _describe(exc)))
    return out


def _work_mel(items, settings: MelSettings, return_audio: bool):
    out = []
    for tid, path in items:
        try:
            y, padded = mel_audio(path, settings)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = y if return_audio else log_mel(y, settings).astype(np.float16)
            out.append((tid, value, padded, None))
        except Exception as exc:
            out.append((tid, None, False, _describe(exc)))
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AudioError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _mp_context(use_cuda: bool):
    methods = multiprocessing.get_all_start_methods()
    # fork starts instantly and inherits warm imports; never fork a process that holds CUDA
    if "fork" in methods and not use_cuda and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run(fn: Callable, chunks: list[list], *, jobs: int, use_cuda: bool, on_result: Callable, bar,
         executor=None) -> None:
    """Run ``fn(chunk)`` for every chunk (in ``jobs`` processes, or as Ray tasks of an
    ``executor``) and feed results to ``on_result`` in the main process, at most ``2 * jobs``
    chunks in flight (bounded memory)."""
    if executor is not None:  # mattlib.executors.RayExecutor: one CPU task per chunk
        for res in executor.map_unordered(fn, chunks):
            on_result(res)
            bar.update(len(res))
        return
    if jobs <= 1 or len(chunks) <= 1:
        with _single_blas_thread():
            for chunk in chunks:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fn(chunk)
                on_result(res)
                bar.update(len(chunk))
        return
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=_mp_context(use_cuda), initializer=_init_worker,
                                initargs=(os.getpid(),)) as ex:
        pending: set = set()
        it = iter(chunks)
        try:
            for chunk in it:
                pending.add(ex.submit(fn, chunk))
                if len(pending) >= 2 * jobs:
                    break
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    res = fut.result()
                    on_result(res)
                    bar.update(len(res))
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(ex.submit(fn, nxt))
        except BaseException:  # Ctrl-C: no queued chunk starts (finished ones are already saved)
            ex.shutdown(wait=False, cancel_futures=True)
            raise


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="track", disable=not enabled, smoothing=0.1, dynamic_ncols=True)


def _resolve_device(device: str | None) -> str:
    if device is not None and device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda[:i]', got {device!r}")
    if device == "cpu":
        return device
    # importing torch costs ~1.5 s: skip it on machines without an NVIDIA driver
    if "torch" not in sys.modules and not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        cuda = False
    else:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:  # pragma: no cover
            cuda = False
    if device is None:
        return "cuda" if cuda else "cpu"
    if device.startswith("cuda") and not cuda:
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    return device


def extract(
    tracks: Mapping[int, str | os.PathLike] | pd.Series | Iterable[tuple[int, str | os.PathLike]],
    *,
    kind: str,
    out: str | os.PathLike,
    jobs: int = 1,
    settings: MelSettings | None = None,
    progress: bool = True,
    chunk_size: int | None = None,
    device: str | None = None,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """Extract features of many audio files into a cache folder (parallel, resumable).

    Parameters
    ----------
    tracks : mapping track_id -> path, Series, or iterable of (track_id, path)
        The audio files.  Track ids are non-negative ints.
    kind : {"fma518", "mel"}
        FMA's 518 statistics (``<out>/fma518/``) or log-mel spectrograms
        (``<out>/mel-<settings_id>/``).
    out : str or Path
        Cache folder.
    jobs : int >= 1
        Worker processes (decoding and CPU features).
    settings : MelSettings, optional
        Mel settings (``kind="mel"`` only; default ``MelSettings()``).
    progress : bool
        Show a tqdm bar (tracks/s and ETA).
    chunk_size : int, optional
        Tracks per work unit, also the resume granularity (default 8 for fma518, 32 for mel,
        smaller for short lists).
    device : {"cpu", "cuda"}, optional
        Where mel spectrograms are computed: default CUDA (torch, batched per chunk) when
        available (:func:`log_mel_torch`), else :func:`log_mel` (numpy) inside the workers.
    repair : bool, default False
        A finished cache that no longer matches its ``manifest.json`` (a damaged or cut file)
        raises :class:`DamagedCacheError`; with ``repair`` the damaged part is re-extracted
        (mel: the damaged parts of rows; fma518: the whole table).
    executor : mattlib.executors.RayExecutor, optional
        Run the chunks as Ray tasks instead of ``jobs`` local processes; the results are written
        here exactly as locally (same files, same resume and failures).

    Returns
    -------
    ExtractionReport

    Notes
    -----
    Resuming: fma518 writes each finished chunk to ``parts/part-*.npz`` (atomically) and merges
    them with any previous ``features.csv`` at the end; mel writes rows into the preallocated
    ``mel.npy`` memmap and appends them to ``progress.csv`` after flushing, so a killed run
    recomputes only unfinished chunks.  Failed tracks are retried by a later run.  For fma518,
    ``features.csv`` keeps the tracks of earlier runs (the cache only grows).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if settings is not None and not isinstance(settings, MelSettings):
        raise TypeError(f"settings must be a MelSettings, got {type(settings).__name__}")
    if kind == "fma518" and settings is not None:
        raise ValueError("settings apply to kind='mel' only")
    tracks = _normalise_tracks(tracks)
    out = Path(out)
    with folder_lock(out, what="feature cache"):  # one writer per cache
        if kind == "fma518":
            return _extract_fma518(tracks, out=out, jobs=int(jobs), progress=progress, chunk_size=chunk_size,
                                   repair=repair, executor=executor)
        return _extract_mel(
            tracks,
            out=out,
            jobs=int(jobs),
            settings=settings or MelSettings(),
            progress=progress,
            chunk_size=chunk_size,
            device=_resolve_device(device),
            repair=repair,
            executor=executor,
        )


def _default_chunk(n: int, jobs: int, cap: int) -> int:
    return max(1, min(cap, -(-n // (4 * jobs)) if n else 1))


def _extract_fma518(tracks: dict[int, Path], *, out: Path, jobs: int, progress: bool, chunk_size,
                    repair: bool = False, executor=None) -> ExtractionReport:
    t0 = time.perf_counter()
    folder = out / "fma518"
    parts = folder / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    if (folder / "features.csv").exists():
        try:
            _check_manifest(folder)
        except DamagedCacheError:
            if not repair:
                raise
            for name in ("features.csv", "features.parquet", MANIFEST):
                (folder / name).unlink(missing_ok=True)  # re-extracted below

    # what is already finished: a previous merged table and/or parts of a killed run
    have: set[int] = set()
    if (folder / "features.csv").exists():
        have |= set(_read_table(folder).index.tolist())
    for part in sorted(parts.glob("part-*.npz")):
        with np.load(part) as z:
            have |= set(z["ids"].tolist())
    todo = [(tid, str(p)) for tid, p in tracks.items() if tid not in have]
    reused = len(tracks) - len(todo)
    failures: list[tuple[int, str, str]] = []
    done = 0

    def on_result(res):
        nonlocal done
        ok = [(tid, v, p) for tid, v, p, err in res if err is None]
        failures.extend((tid, str(tracks[tid]), err) for tid, v, p, err in res if err is not None)
        if ok:
            ids = np.array([t for t, _, _ in ok], dtype=np.int64)
            vals = np.stack([v for _, v, _ in ok]).astype(np.float32)
            padded = np.array([p for _, _, p in ok], dtype=bool)
            name = parts / f"part-{ids[0]:07d}-{uuid.uuid4().hex[:8]}.npz"

            def write(p: Path):
                with open(p, "wb") as fh:
                    np.savez(fh, ids=ids, values=vals, padded=padded)

            _atomic_write(name, write)
            done += len(ok)

    chunk = chunk_size or _default_chunk(len(todo), jobs, 8)
    with _progress_bar(len(todo), "fma518", progress) as bar:
        _run(_work_fma518, _chunks(todo, chunk), jobs=jobs, use_cuda=False, on_result=on_result, bar=bar,
             executor=executor)

    # merge: previous table + all parts → features.csv / .parquet, then drop the parts
    frames = []
    padded = set(_read_padded(folder)) if (folder / "features.csv").exists() else set()
    if (folder / "features.csv").exists():
        frames.append(_read_table(folder))
    part_files = sorted(parts.glob("part-*.npz"))
    for part in part_files:
        with np.load(part) as z:
            frames.append(pd.DataFrame(z["values"], index=pd.Index(z["ids"], name="track_id"), columns=fma518_columns()))
            if "padded" in z.files:
                padded |= set(z["ids"][z["padded"]].tolist())
    table = pd.concat(frames) if frames else pd.DataFrame(columns=fma518_columns(), dtype=np.float32)
    table = table[~table.index.duplicated(keep="last")]
    _write_features(folder, table)
    padded &= set(table.index.tolist())
    _atomic_write(folder / "padded.csv", lambda p: pd.DataFrame({"track_id": sorted(padded)}).to_csv(p, index=False))
    for part in part_files:
        part.unlink()
    _write_failures(folder / "failures.csv", failures)
    report = ExtractionReport(
        kind="fma518",
        n_tracks=len(tracks),
        done=done,
        reused=reused,
        failed=len(failures),
        padded=len(padded),
        seconds=time.perf_counter() - t0,
        jobs=jobs,
        device="cpu",
        paths={
            "folder": str(folder),
            "features_csv": str(folder / "features.csv"),
            "features_parquet": str(folder / "features.parquet"),
            "failures": str(folder / "failures.csv"),
        },
    )
    _write_json(folder / "report.json", report.to_dict())
    _write_manifest(folder, ["features.csv", "features.parquet", "failures.csv", "padded.csv"])
    return report


def _read_progress(path: Path, track_ids: list[int]) -> dict[int, bool]:
    """Rows finished by earlier runs: row -> padded.  Lines that do not match the layout (e.g. a
    half-written last line of a killed run) are ignored."""
    done: dict[int, bool] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        parts = line.split(",")
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        row, tid, padded = int(parts[0]), parts[1], parts[2]
        if row < len(track_ids) and tid.isdigit() and int(tid) == track_ids[row] and padded in ("0", "1"):
            done[row] = padded == "1"
    return done


def _prepare_mel_folder(folder: Path, track_ids: list[int], settings: MelSettings) -> dict[int, bool]:
    """Create or reuse ``mel.npy`` for exactly ``track_ids``; returns finished rows (row -> padded).

    A previous store with the same settings but another track list is re-laid out, copying the
    rows that can be reused.
    """
    folder.mkdir(parents=True, exist_ok=True)
    layout_path, mel_path, prog_path = folder / "layout.json", folder / "mel.npy", folder / "progress.csv"
    shape = (len(track_ids), settings.n_mels, settings.n_frames)
    old_layout = json.loads(layout_path.read_text()) if layout_path.exists() else None
    # the completion marker goes first: from now on the folder is "in progress"
    for marker in (MANIFEST, "index.csv"):
        (folder / marker).unlink(missing_ok=True)

    if old_layout and mel_path.exists() and old_layout.get("settings") == settings.to_dict():
        old_ids = old_layout["track_ids"]
        old_done = _read_progress(prog_path, old_ids)
        if old_ids == track_ids:
            mm = np.load(mel_path, mmap_mode="r")
            if mm.shape == shape and mm.dtype == np.float16:
                return old_done
        # re-layout: copy finished rows of tracks we still want
        old_mm = np.load(mel_path, mmap_mode="r")
        pos = {t: r for r, t in enumerate(track_ids)}
        keep = {pos[old_ids[r]]: (r, p) for r, p in old_done.items() if old_ids[r] in pos}
        if prog_path.exists():
            prog_path.unlink()

        def write(p: Path):
            new = np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=shape)
            for new_row, (old_row, _) in sorted(keep.items()):
                new[new_row] = old_mm[old_row]
            new.flush()
            del new

        _atomic_write(mel_path.with_suffix(".npy"), write)
        del old_mm
        _write_json(layout_path, {"settings": settings.to_dict(), "track_ids": track_ids, "shape": list(shape)})
        lines = "".join(f"{r},{track_ids[r]},{int(p)}\n" for r, (_, p) in sorted(keep.items()))
        _atomic_write(prog_path, lambda p: p.write_text(lines))
        return {r: p for r, (_, p) in keep.items()}

    # fresh store
    for p in (prog_path, layout_path):
        if p.exists():
            p.unlink()

    def write(p: Path):
        new = np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=shape)
        new.flush()
        del new
        # reserve the disk space now: a full disk is an OSError here, not a Bus error later
        fd = os.open(p, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    _atomic_write(mel_path, write)
    _write_json(layout_path, {"settings": settings.to_dict(), "track_ids": track_ids, "shape": list(shape)})
    return {}


def _damaged_mel_tracks(folder: Path, *, repair: bool) -> set[int]:
    """Track ids whose stored log-mel no longer matches the manifest of a finished extraction.

    Without ``repair`` a damaged store raises :class:`DamagedCacheError`; with it, the damaged
    tracks are returned (a store cut short is removed whole) and re-extracted.
    """
    if not (folder / MANIFEST).exists():
        return set()  # nothing finished yet (or a killed run: resumed from progress.csv)
    try:
        manifest = _check_manifest(folder)
        rows = _damaged_mel_rows(folder, manifest)
        if rows and not repair:
            raise DamagedCacheError(f"{folder / 'mel.npy'}: {len(rows)} rows differ from {MANIFEST}; {_fix(folder)}")
    except DamagedCacheError:
        if not repair:
            raise
        for name in ("mel.npy", "layout.json", "progress.csv", "index.csv", MANIFEST):
            (folder / name).unlink(missing_ok=True)
        return set()
    ids = json.loads((folder / "layout.json").read_text())["track_ids"]
    return {ids[r] for r in rows}


def _extract_mel(
    tracks: dict[int, Path], *, out: Path, jobs: int, settings: MelSettings, progress: bool, chunk_size, device: str,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    t0 = time.perf_counter()
    folder = mel_dir(out, settings)
    track_ids = list(tracks)
    damaged = _damaged_mel_tracks(folder, repair=repair)
    done_rows = _prepare_mel_folder(folder, track_ids, settings)
    for r, t in enumerate(track_ids):
        if t in damaged:
            done_rows.pop(r, None)  # re-extracted
    row_of = {t: r for r, t in enumerate(track_ids)}
    todo = [(t, str(tracks[t])) for r, t in enumerate(track_ids) if r not in done_rows]
    reused = len(track_ids) - len(todo)
    failures: list[tuple[int, str, str]] = []
    padded_flags = dict(done_rows)
    n_done = 0
    use_cuda = device.startswith("cuda")
    fb = mel_filterbank(settings) if use_cuda else None

    mm = np.load(folder / "mel.npy", mmap_mode="r+")
    prog_path = folder / "progress.csv"
    if prog_path.exists() and prog_path.stat().st_size and not prog_path.read_bytes().endswith(b"\n"):
        with open(prog_path, "a") as fh:  # a killed run may have left half a line: close it
            fh.write("\n")
    prog = open(prog_path, "a")

    def on_result(res):
        nonlocal n_done
        ok = [(t, v, p) for t, v, p, err in res if err is None]
        failures.extend((t, str(tracks[t]), err) for t, v, p, err in res if err is not None)
        if not ok:
            return
        if use_cuda:
            batch = np.stack([v for _, v, _ in ok])
            mels = log_mel_torch(batch, settings, device=device, fb=fb).cpu().numpy().astype(np.float16)
        else:
            mels = [v for _, v, _ in ok]
        lines = []
        for (t, _, p), m in zip(ok, mels):
            r = row_of[t]
            mm[r] = m
            padded_flags[r] = bool(p)
            lines.append(f"{r},{t},{int(p)}\n")
        mm.flush()  # data first, then the claim that it is there
        prog.write("".join(lines))
        prog.flush()
        os.fsync(prog.fileno())
        n_done += len(ok)

    chunk = chunk_size or _default_chunk(len(todo), jobs, 32)
    fn = _bind(_work_mel, settings=settings, return_audio=use_cuda)
    try:
        with _progress_bar(len(todo), f"mel {settings.settings_id}", progress) as bar:
            _run(fn, _chunks(todo, chunk), jobs=jobs, use_cuda=use_cuda, on_result=on_result, bar=bar,
                 executor=executor)
    finally:
        prog.close()
        mm.flush()
        mm = None  # release the memory map (on_result is never called after this)

    failed_ids = {t for t, _, _ in failures}
    index = pd.DataFrame(
        {
            "row": np.arange(len(track_ids)),
            "track_id": track_ids,
            "padded": [bool(padded_flags.get(r, False)) for r in range(len(track_ids))],
            "status": ["failed" if t in failed_ids else "ok" for t in track_ids],
        }
    )
    _write_failures(folder / "failures.csv", failures)
    _atomic_write(folder / "index.csv", lambda p: index.to_csv(p, index=False))  # completion marker
    report = ExtractionReport(
        kind="mel",
        n_tracks=len(track_ids),
        done=n_done,
        reused=reused,
        failed=len(failures),
        padded=int(index.loc[index["status"] == "ok", "padded"].sum()),
        seconds=time.perf_counter() - t0,
        jobs=jobs,
        device=device,
        paths={
            "folder": str(folder),
            "mel": str(folder / "mel.npy"),
            "index": str(folder / "index.csv"),
            "failures": str(folder / "failures.csv"),
        },
    )
    _write_json(folder / "report.json", {**report.to_dict(), "settings_id": settings.settings_id})
    _write_manifest(folder, ["index.csv", "layout.json", "failures.csv"], mel=np.load(folder / "mel.npy", mmap_mode="r"))
    return report


class _bind:
    """Picklable ``functools.partial`` for keyword arguments."""

    def __init__(self, fn, **kw):
        self.fn, self.kw = fn, kw

    def __call__(self, items):
        return self.fn(items, **self.kw)


def extract_subset(
    root: str | os.PathLike,
    *,
    subset: str,
    kind: str,
    out: str | os.PathLike,
    jobs: int = 1,
    settings: MelSettings | None = None,
    progress: bool = True,
    device: str | None = None,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """Extract features of every track of an FMA subset (``subset`` and smaller ones).

    Audio is looked up as ``<root>/fma_<subset>/XXX/XXXXXX.mp3`` (the subset's own folder holds
    the smaller subsets' clips too, as FMA distributes them).  See :func:`extract`.
    """
    from mattlib import fma

    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    tracks = fma.subset_tracks(fma.load_tracks(root), subset)
    paths = {int(t): fma.audio_path(root, int(t), subset=subset) for t in tracks.index}
    return extract(paths, kind=kind, out=out, jobs=jobs, settings=settings, progress=progress, device=device,
                   repair=repair, executor=executor)


def extract_audio_dir(
    audio_dir: str | os.PathLike,
    *,
    kind: str,
    out: str | os.PathLike,
    jobs: int = 1,
    settings: MelSettings | None = None,
    progress: bool = True,
    device: str | None = None,
    repair: bool = False,
    executor=None,
) -> ExtractionReport:
    """Extract features of every ``*.mp3`` below a folder; track id = ``int(file stem)``.

    Files whose stem is not an integer are skipped with a warning.  See :func:`extract`.
    """
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder not found: {audio_dir}")
    if kind not in KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    paths: dict[int, Path] = {}
    skipped = []
    for p in sorted(audio_dir.rglob("*.mp3")):
        if p.stem.isdigit():
            if int(p.stem) in paths:
                raise ValueError(f"two files with track id {int(p.stem)}: {paths[int(p.stem)]} and {p}")
            paths[int(p.stem)] = p
        else:
            skipped.append(p.name)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} mp3 files without an integer name: {skipped[:5]}", stacklevel=2)
    if not paths:
        raise ValueError(f"no *.mp3 files with integer names below {audio_dir}")
    return extract(paths, kind=kind, out=out, jobs=jobs, settings=settings, progress=progress, device=device,
                   repair=repair, executor=executor)


# ---------------------------------------------------------------------------------------------
# Exploration helper
# ---------------------------------------------------------------------------------------------


def project_2d(features: pd.DataFrame, *, method: str = "pca", seed: int = 0, standardize: bool = True) -> pd.DataFrame:
    """2-D projection of feature vectors (for plots).

    Parameters
    ----------
    features : pandas.DataFrame, (n_tracks, d)
        Rows with a NaN are dropped (with a warning).
    method : {"pca", "tsne"}
    seed : int
        Random state (t-SNE).
    standardize : bool
        Z-score each column first (the 518 statistics have very different scales).

    Returns
    -------
    pandas.DataFrame
        Same index, columns ``x``, ``y``.
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    X = features.to_numpy(dtype=np.float64)
    good = np.isfinite(X).all(axis=1)
    if not good.all():
        warnings.warn(f"project_2d: dropped {int((~good).sum())} rows with NaN/inf", stacklevel=2)
    X, index = X[good], features.index[good]
    if len(X) < 3:
        raise ValueError(f"need at least 3 complete rows to project, got {len(X)}")
    if standardize:
        sd = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if method == "pca":
        from sklearn.decomposition import PCA

        Z = PCA(n_components=2, random_state=seed).fit_transform(X)
    else:
        from sklearn.manifold import TSNE

        Z = TSNE(n_components=2, random_state=seed, perplexity=min(30.0, (len(X) - 1) / 3)).fit_transform(X)
    return pd.DataFrame(Z, index=index, columns=["x", "y"])
