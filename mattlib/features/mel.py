"""The paper's log-mel spectrogram (12 kHz, 96 mels, hop 256): numpy, librosa and torch."""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings

import numpy as np

from mattlib import devices
from mattlib.features.audio import audio_info, load_audio

__all__ = [
    "MelSettings",
    "mel_filterbank",
    "mel_audio",
    "log_mel",
    "log_mel_librosa",
    "log_mel_torch",
    "compute_mel",
    "mel_clip",
]


#: Which part of a longer clip a log-mel keeps.
CROPS = ("start", "centre")


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
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
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

    device = devices.resolve(device)
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


def mel_clip(path: str | os.PathLike, settings: MelSettings) -> tuple[np.ndarray, bool]:
    """One clip's float16 log-mel for the cache (the ``mel`` kind's per-clip function, on CPU).

    Returns ``(log-mel (n_mels, n_frames) float16, padded)``.
    """
    y, padded = mel_audio(path, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return log_mel(y, settings).astype(np.float16), padded
