"""FMA's 518 per-track statistics (Defferrard et al., ISMIR 2017), in FMA's layout."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mattlib.data.fma import FMA_FEATURE_SIZES, FMA_STATISTICS, fma518_columns
from mattlib.features.audio import AudioError, load_audio

__all__ = [
    "FMA_FEATURE_SIZES",
    "FMA_STATISTICS",
    "fma518_columns",
    "fma518_groups",
    "fma518_vector",
    "compute_fma518",
    "fma518_clip",
]


# FMA's feature code leaves ``sr`` at librosa's default (22050 Hz) in the spectral-shape calls
# (centroid, bandwidth, rolloff, contrast, chroma_stft) although the audio is read at its native
# rate (44.1 kHz on FMA), so those frequencies are on a 22050 Hz scale.  We keep that quirk:
# the values are then interchangeable with FMA's features.csv.
_FMA_SPECTRAL_SR = 22050
_FMA_HOP = 512
_FMA_N_FFT = 2048
#: Seconds of a clip the statistics describe: FMA's clips are 30 s, and FMA computed them on the
#: whole clip; a longer file is read only this far (an hour-long file costs what a clip costs).
FMA_SECONDS = 30.0


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
    """The 518 FMA statistics of one audio file (its first :data:`FMA_SECONDS` = 30 s, decoded
    mono at its native rate).

    Returns
    -------
    pandas.Series, float32, length 518
        Indexed by :func:`fma518_columns`; ``attrs["padded"]`` is True for a clip shorter than
        one analysis frame (2048 samples), whose frames are mostly padding.

    Raises
    ------
    AudioError
        The file cannot be decoded, or is silent (every sample 0: its statistics are undefined).
    """
    y, sr = load_audio(path, sr=None, mono=True, duration=FMA_SECONDS)
    if y.size and not np.any(y):
        raise AudioError(
            path, f"silent (every sample of its first {FMA_SECONDS:g} s is 0): its statistics are undefined"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns on very short clips (n_fft > len)
        vec = fma518_vector(y, sr=sr, legacy=legacy)
    series = pd.Series(vec, index=fma518_columns(), name=Path(path).stem)
    series.attrs["padded"] = len(y) < _FMA_N_FFT
    return series


def fma518_clip(path: str | os.PathLike, settings: None = None) -> tuple[np.ndarray, bool]:
    """One clip's 518 statistics for the cache (the ``fma518`` kind's per-clip function).

    Returns ``(values (518,), padded)``.  A statistic that is undefined for this clip (the skew or
    kurtosis of a constant series, e.g. a chroma bin that never sounds) is stored as 0, the value of
    a symmetric, normal-tailed series: the cache never holds NaN.  A silent clip, or one whose 518
    values are all undefined, raises (a listed failure, not a result).
    """
    series = compute_fma518(path)
    values = series.to_numpy()
    finite = np.isfinite(values)
    if not finite.any():
        raise ValueError("no finite feature value (all 518 undefined)")
    return np.where(finite, values, 0.0).astype(values.dtype), bool(series.attrs.get("padded", False))
