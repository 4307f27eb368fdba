"""Audio decoding for the FMA clips.

Decoding goes through :mod:`soundfile` (libsndfile with mpg123, so MP3 needs no ffmpeg) and
resampling through :mod:`soxr` with the same quality librosa uses by default (``soxr_hq``), so
``load_audio(path, sr=sr)`` matches ``librosa.load(path, sr=sr)`` on the same file.

Every failure (missing, empty, undecodable or truncated file) raises :class:`AudioError`, which
names the path, so a bulk extraction can record it and carry on.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mattlib.errors import MattError

__all__ = ["AudioError", "load_audio", "audio_info"]

# A truncated MP3 still decodes, up to where its bytes stop; we detect it by comparing the decoded
# length with the length the header announces.  MP3 encoder delay/padding makes the two differ by
# up to a couple of 1152-sample frames on healthy files, hence this tolerance (in samples).
_TRUNCATION_TOLERANCE = 4 * 1152


class AudioError(MattError, RuntimeError):
    """An audio file could not be decoded.

    Parameters
    ----------
    path : str or Path
        The file.
    reason : str
        What went wrong, e.g. ``"file not found"``, ``"empty file (0 bytes)"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"cannot decode audio file {self.path}: {self.reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


def _open(path: Path):
    import soundfile as sf

    if not path.exists():
        raise AudioError(path, "file not found")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # libsndfile says little more than "cannot open"
        if not _looks_like_audio(path):
            raise AudioError(path, "not an audio file (no MP3, WAV, FLAC or Ogg signature)") from exc
        raise AudioError(path, f"undecodable ({type(exc).__name__}: {exc})") from exc


def _looks_like_audio(path: Path) -> bool:
    """Whether the file starts like a container libsndfile reads (ID3 tag, MPEG frame sync, RIFF,
    FLAC, Ogg, AIFF)."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head[:3] == b"ID3" or head in (b"RIFF", b"fLaC", b"OggS", b"FORM"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def audio_info(path: str | os.PathLike) -> dict:
    """Header information of an audio file, without decoding it.

    Returns
    -------
    dict
        ``samplerate`` (Hz), ``channels``, ``frames`` (samples per channel as announced by the
        header) and ``duration`` (seconds).
    """
    path = Path(path)
    with _open(path) as f:
        sr, frames = int(f.samplerate), int(f.frames)
        return dict(samplerate=sr, channels=int(f.channels), frames=frames, duration=frames / sr)


def load_audio(
    path: str | os.PathLike,
    *,
    sr: int | None,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32 samples.

    Parameters
    ----------
    path : str or Path
        Audio file (MP3, WAV, FLAC, ...).
    sr : int or None
        Target sampling rate in Hz; ``None`` keeps the file's native rate.  Resampling uses soxr
        at "HQ" quality (librosa's default ``res_type='soxr_hq'``).
    mono : bool
        Average the channels (as ``librosa.to_mono``).
    offset : float >= 0
        Start reading this many seconds into the file.
    duration : float > 0 or None
        Read at most this many seconds (``None``: to the end).

    Returns
    -------
    y : np.ndarray, float32, shape (n,) if mono else (channels, n)
        Samples in [-1, 1].
    sr : int
        Sampling rate of ``y`` in Hz.

    Raises
    ------
    AudioError
        The file is missing, empty, undecodable, truncated (decodes to clearly fewer samples than
        its header announces) or holds no samples.
    ValueError
        Invalid ``sr``, ``offset`` or ``duration``.
    """
    if sr is not None and (not isinstance(sr, (int, np.integer)) or sr <= 0):
        raise ValueError(f"sr must be a positive int or None, got {sr!r}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0 seconds, got {offset!r}")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be > 0 seconds or None, got {duration!r}")
    path = Path(path)

    with _open(path) as f:
        native = int(f.samplerate)
        announced = int(f.frames)
        start = int(offset * native)  # librosa's rounding
        want = -1 if duration is None else int(duration * native)
        try:
            if start:
                if start >= announced:
                    raise AudioError(path, f"offset {offset} s is past the end ({announced / native:.3f} s)")
                f.seek(start)
            y = f.read(frames=want, dtype="float32", always_2d=True)
        except AudioError:
            raise
        except Exception as exc:
            raise AudioError(path, f"decoding failed ({type(exc).__name__}: {exc})") from exc

    n = y.shape[0]
    if n == 0:
        raise AudioError(path, "no audio samples decoded")
    expected = announced - start if want < 0 else min(want, announced - start)
    if expected - n > _TRUNCATION_TOLERANCE:
        raise AudioError(
            path,
            f"truncated: decoded {n} of {expected} samples ({n / native:.2f} of "
            f"{expected / native:.2f} s announced by the header)",
        )

    if mono:
        if y.shape[1] == 2:
            # same float32 result as librosa.to_mono (a + b, halved), without a strided reduction
            y = (y[:, 0] + y[:, 1]) * np.float32(0.5)
        else:
            y = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
    else:
        y = y.T  # (channels, n)
    if sr is not None and sr != native:
        import soxr

        n_out = int(np.ceil(y.shape[-1] * (float(sr) / native)))  # librosa's exact rounding
        y = soxr.resample(y.T, native, sr, quality="soxr_hq").T
        # like librosa.resample(fix=True): exactly ceil(n * ratio) samples
        if y.shape[-1] > n_out:
            y = y[..., :n_out]
        elif y.shape[-1] < n_out:
            pad = [(0, 0)] * (y.ndim - 1) + [(0, n_out - y.shape[-1])]
            y = np.pad(y, pad)
    else:
        sr = native
    return np.ascontiguousarray(y, dtype=np.float32), int(sr)
