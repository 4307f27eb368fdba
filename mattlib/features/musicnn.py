"""musicnn embeddings of a clip (Pons & Serra, "musicnn: pre-trained convolutional neural networks
for music audio tagging", ISMIR 2019 LBD), computed by the torch port in
:mod:`mattlib.features.musicnn_net` with the weights of the ``musicnn==0.1.0`` wheel.

Preprocessing follows ``musicnn.extractor``: audio at 16 kHz mono, a power mel spectrogram (96
Slaney bands, n_fft 512, hop 256, centred frames), ``log10(10000 x + 1)``, cut into patches of 187
frames (3 s) without overlap; a 30 s clip gives 10 patches.  Two upstream defects are fixed:

1. the log is computed in float32, and the log-mel stays float32 into the network (the original
   rounds to float16 first: 0.07-7 % of the bins of real clips overflow to inf);
2. every patch gets its own values (the original's ``extractor()`` repeats the first patch's
   ``penultimate`` for every later patch).

:func:`embed_file` is one clip; the ``musicnn`` feature kind (:data:`mattlib.features.kinds.KINDS`)
extracts one vector per patch for many clips into the cache: the workers decode and compute the
log-mel (:func:`musicnn_input`), the parent runs the network on the patches of many clips at once
(:func:`musicnn_batch`), on CUDA when there is one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from mattlib.features.audio import AudioError, load_audio

__all__ = [
    "MSD_TAGS",
    "MTT_TAGS",
    "VECTORS",
    "MusicnnSettings",
    "musicnn_log_mel",
    "musicnn_patches",
    "embed_patches",
    "embed_file",
    "tag_lookup",
    "musicnn_input",
    "musicnn_batch",
    "load_musicnn_features",
]

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH = 187  # frames per patch: librosa.time_to_frames(3 s) + 1, as musicnn
_MIN_SAMPLES = (PATCH - 1) * HOP  # the shortest audio that gives one patch (2.976 s)
_SILENCE = 2.0**-15  # peak below one 16-bit step: nothing to embed

#: The 50 tags of each model (musicnn/configuration.py), in the taggram's column order.
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
    "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
    "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird",
    "country", "metal", "female voice", "choral",
)  # fmt: skip
#: Trained model -> its 50 tags.
TAGS = {"MSD_musicnn": MSD_TAGS, "MTT_musicnn": MTT_TAGS}

#: Vector name -> dimensions per patch.
VECTORS: dict[str, int] = {"taggram": 50, "penultimate": 200, "mean_pool": 753, "max_pool": 753}


@dataclasses.dataclass(frozen=True)
class MusicnnSettings:
    """What the ``musicnn`` feature kind stores per track: one ``vector`` per 3 s patch.

    Parameters
    ----------
    model : {"MSD_musicnn", "MTT_musicnn"}
        Trained on the Million Song Dataset's or on MagnaTagATune's 50 top tags.
    vector : {"penultimate", "mean_pool", "max_pool", "taggram"}
        The 200-d penultimate layer, the 753-d mean- or max-pool of the mid end, or the 50 tag
        probabilities.
    seconds : float
        Audio read per clip, from its start: ``n_patches = (1 + seconds * 16000 // 256) // 187``
        (10 for 30 s).  A shorter clip (at least one patch) fills its first rows and leaves NaN
        rows after them (flagged ``padded``).
    """

    model: str = "MSD_musicnn"
    vector: str = "penultimate"
    seconds: float = 30.0

    def __post_init__(self):
        if self.model not in TAGS:
            raise ValueError(f"unknown musicnn model {self.model!r}; valid: {', '.join(TAGS)}")
        if self.vector not in VECTORS:
            raise ValueError(f"unknown musicnn vector {self.vector!r}; valid: {', '.join(VECTORS)}")
        if not (isinstance(self.seconds, (int, float)) and self.seconds * SR >= _MIN_SAMPLES):
            raise ValueError(f"seconds must be >= {_MIN_SAMPLES / SR:.3f} (one 3 s patch), got {self.seconds!r}")

    @property
    def n_patches(self) -> int:
        """Patches stored per track."""
        return (1 + int(round(self.seconds * SR)) // HOP) // PATCH

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_patches, dim)`` of one track."""
        return (self.n_patches, VECTORS[self.vector])

    @property
    def settings_id(self) -> str:
        """Folder-safe id, e.g. ``MSD_musicnn-penultimate-30s``."""
        return f"{self.model}-{self.vector}-{self.seconds:g}s"

    @property
    def tags(self) -> tuple[str, ...]:
        return TAGS[self.model]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, f / (200.0 / 3))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


@functools.lru_cache(maxsize=1)
def _filterbank() -> np.ndarray:
    """librosa's ``filters.mel(sr=16000, n_fft=512, n_mels=96)`` (Slaney scale and area norm),
    computed the same way and in the same precision steps, without importing librosa (4 s in
    every worker process); a test compares the two bit for bit."""
    freqs = np.fft.rfftfreq(N_FFT, d=1.0 / SR)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2.0), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, freqs)
    fb = np.zeros((N_MELS, len(freqs)), dtype=np.float32)
    for i in range(N_MELS):
        fb[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    fb *= (2.0 / (mel_f[2 : N_MELS + 2] - mel_f[:N_MELS]))[:, np.newaxis]
    fb.flags.writeable = False
    return fb


@functools.lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    w.flags.writeable = False
    return w


def musicnn_log_mel(y: np.ndarray) -> np.ndarray:
    """musicnn's log-mel of 16 kHz mono audio, in float32 (fix 1).

    ``log10(10000 * melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96) + 1)``
    (librosa's centred, zero-padded frames, periodic Hann window, power 2, Slaney mel bands).

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono audio at 16 kHz.

    Returns
    -------
    np.ndarray, float32, shape (1 + n // 256, 96)
        Frames × mel bands.

    Examples
    --------
    >>> musicnn_log_mel(np.zeros(16000, dtype=np.float32)).shape
    (63, 96)
    """
    import scipy.fft

    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    yp = np.pad(y, N_FFT // 2)
    n_frames = 1 + (yp.shape[0] - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        yp, shape=(n_frames, N_FFT), strides=(yp.strides[0] * HOP, yp.strides[0]), writeable=False
    )
    X = scipy.fft.rfft(frames * _hann(), axis=-1)
    power = X.real * X.real + X.imag * X.imag  # (T, 257)
    mel = power @ _filterbank().T  # (T, 96)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0)).astype(np.float32, copy=False)


def musicnn_patches(log_mel: np.ndarray) -> np.ndarray:
    """Cut a log-mel (frames × 96) into whole 187-frame patches (no overlap): (n_patches, 187, 96)."""
    n = log_mel.shape[0] // PATCH
    return np.ascontiguousarray(log_mel[: n * PATCH].reshape(n, PATCH, log_mel.shape[1]))


def _clip_patches(path: str | os.PathLike, seconds: float | None) -> np.ndarray:
    """Decode one clip and return its patches; a clip too short or silent is an :class:`AudioError`."""
    y, _ = load_audio(path, sr=SR, mono=True, duration=seconds)
    if y.shape[0] < _MIN_SAMPLES:
        raise AudioError(
            path, f"too short for musicnn: {y.shape[0] / SR:.2f} s, one patch needs {_MIN_SAMPLES / SR:.3f} s"
        )
    if not np.abs(y).max() >= _SILENCE:
        raise AudioError(path, "silent (every sample below 2^-15): nothing for musicnn to embed")
    return musicnn_patches(musicnn_log_mel(y))


def _device(device: str | None) -> str:
    from mattlib import devices

    return devices.resolve(device)


@contextlib.contextmanager
def _float32_convolutions():
    """cuDNN convolutions in full float32, not TF32 (torch's default on Ampere and later GPUs, whose
    10-bit mantissa moved the tag probabilities by 1.6e-4 on an H200): the port then matches the
    original graph to 1e-4 on a GPU as on the CPU."""
    import torch

    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


def embed_patches(
    patches: np.ndarray,
    *,
    model: str = "MSD_musicnn",
    device: str | None = "auto",
    patches_per_batch: int | None = None,
) -> dict[str, np.ndarray]:
    """Run musicnn on log-mel patches.

    Parameters
    ----------
    patches : np.ndarray, float32, shape (n, 187, 96)
        From :func:`musicnn_patches` (any number of clips' patches together).
    model : {"MSD_musicnn", "MTT_musicnn"}
    device : {"cpu", "cuda", "auto"} or None
        ``auto`` / None: CUDA when available.
    patches_per_batch : int, optional
        Patches per forward pass: default 2 on CPU, where a patch's first timbral map (9 MB) is
        reduced while still in cache (28 ms a patch on 2 threads, against 43 ms in batches of 16);
        256 on CUDA.

    Returns
    -------
    dict
        ``taggram`` (n, 50), ``penultimate`` (n, 200), ``mean_pool``, ``max_pool`` (n, 753),
        float32.
    """
    import torch

    from mattlib.features.musicnn_net import load_musicnn

    device = _device(device)
    step = patches_per_batch or (256 if device.startswith("cuda") else 2)
    net = load_musicnn(model, device=device)
    x = np.ascontiguousarray(patches, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (PATCH, N_MELS):
        raise ValueError(f"patches must have shape (n, {PATCH}, {N_MELS}), got {x.shape}")
    outs: dict[str, list] = {k: [] for k in VECTORS}
    with torch.inference_mode(), _float32_convolutions():
        for i in range(0, len(x), step):
            res = net(torch.from_numpy(x[i : i + step]).to(device))
            for k in VECTORS:
                outs[k].append(res[k].float().cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros((0, VECTORS[k]), np.float32) for k, v in outs.items()}


def embed_file(
    path: str | os.PathLike, *, model: str = "MSD_musicnn", device: str | None = "auto"
) -> dict[str, np.ndarray]:
    """musicnn's taggram and embeddings of one audio file, one row per 3 s patch.

    Parameters
    ----------
    path : str or Path
        An audio file (MP3, WAV, ...) at least 2.976 s long; all of it is read.
    model : {"MSD_musicnn", "MTT_musicnn"}
    device : {"cpu", "cuda", "auto"} or None

    Returns
    -------
    dict
        ``taggram`` (n_patches, 50) tag probabilities, ``penultimate`` (n_patches, 200),
        ``mean_pool`` and ``max_pool`` (n_patches, 753), float32, and ``tags`` (50,) the tag
        names of the taggram's columns.

    Raises
    ------
    AudioError
        The file cannot be decoded, is shorter than one patch or is silent.
    mattlib.features.musicnn_net.MusicnnNotInstalled, mattlib.features.musicnn_checkpoint.CheckpointError
        The weights are not installed, or a checkpoint file is damaged.

    Examples
    --------
    >>> out = embed_file("tests/data/fma_small/000/000002.mp3")
    >>> out["penultimate"].shape, str(out["tags"][out["taggram"].mean(0).argmax()])
    ((10, 200), 'Hip-Hop')
    """
    if model not in TAGS:
        raise ValueError(f"unknown musicnn model {model!r}; valid: {', '.join(TAGS)}")
    out = embed_patches(_clip_patches(path, None), model=model, device=device)
    out["tags"] = np.array(TAGS[model])
    return out


def tag_lookup(
    audio_paths: Mapping[int, str | os.PathLike], *, model: str = "MSD_musicnn", k: int = 5
) -> Callable[[int], list[tuple[str, float]]]:
    """``track_id -> [(tag, probability), ...]``: a track's ``k`` top tags, its taggram averaged
    over its patches (computed on first use, then remembered), for the attention explorer.

    Examples
    --------
    >>> top = tag_lookup({2: "tests/data/fma_small/000/000002.mp3"})(2)
    >>> top[0][0], len(top)
    ('Hip-Hop', 5)
    """
    if model not in TAGS:
        raise ValueError(f"unknown musicnn model {model!r}; valid: {', '.join(TAGS)}")

    @functools.lru_cache(maxsize=256)
    def top_tags(track_id: int) -> list[tuple[str, float]]:
        out = embed_file(audio_paths[int(track_id)], model=model)
        mean = out["taggram"].mean(axis=0)
        return [(str(out["tags"][i]), float(mean[i])) for i in np.argsort(mean)[::-1][:k]]

    return top_tags


# -- the feature kind: workers prepare, the parent batches --


def musicnn_input(path: str | os.PathLike, settings: MusicnnSettings) -> tuple[np.ndarray, bool]:
    """A worker's part of one clip: its patches (k, 187, 96) float32, k <= n_patches, and whether
    it has fewer patches than ``settings`` store (``padded``)."""
    patches = _clip_patches(path, settings.seconds)[: settings.n_patches]
    return patches, len(patches) < settings.n_patches


def musicnn_batch(inputs: list[np.ndarray], settings: MusicnnSettings, device: str) -> list[np.ndarray]:
    """The parent's part: the patches of many clips through the network at once; one
    ``settings.shape`` float32 array per clip (rows past a short clip's patches are NaN)."""
    if not inputs:  # the parent's check, before any worker starts: the weights load, or one line
        embed_patches(np.zeros((0, PATCH, N_MELS), np.float32), model=settings.model, device=device)
        return []
    counts = [len(p) for p in inputs]
    values = embed_patches(np.concatenate(inputs), model=settings.model, device=device)[settings.vector]
    out, start = [], 0
    for k in counts:
        v = np.full(settings.shape, np.nan, dtype=np.float32)
        v[:k] = values[start : start + k]
        out.append(v)
        start += k
    return out


def musicnn_clip(path: str | os.PathLike, settings: MusicnnSettings) -> tuple[np.ndarray, bool]:
    """One clip for the cache in one call (the kind's per-clip function): ``(value, padded)``."""
    patches, padded = musicnn_input(path, settings)
    return musicnn_batch([patches], settings, "cpu")[0], padded


def load_musicnn_features(
    cache_dir: str | os.PathLike, settings: MusicnnSettings | None = None, *, pool: str | None = "mean"
):
    """Extracted musicnn vectors of a cache (``<cache_dir>/musicnn-<settings_id>/``).

    Parameters
    ----------
    cache_dir : str or Path
    settings : MusicnnSettings, optional
    pool : {"mean", None}
        ``"mean"``: one vector per track, the mean over its patches (a track is one instance of a
        bag); None: every patch, ``(n_tracks, n_patches, dim)`` with NaN rows past a short clip.

    Returns
    -------
    pandas.DataFrame (pool="mean"), index ``track_id``, columns ``<vector>_<i>``; or a tuple
    ``(track_ids, values)`` (pool=None).

    Raises
    ------
    FileNotFoundError
        Nothing was extracted with these settings (the message says what to run).
    DamagedCacheError
        The stored values differ from the manifest.
    """
    import pandas as pd

    from mattlib.features.store import (
        MANIFEST,
        DamagedCacheError,
        _check_manifest,
        _damaged_mel_rows,
        _fix,
        _warn_failures,
    )

    settings = settings or MusicnnSettings()
    folder = Path(cache_dir) / f"musicnn-{settings.settings_id}"
    if not (folder / "index.csv").exists() or not (folder / MANIFEST).exists():
        raise FileNotFoundError(
            f"{folder}: no complete musicnn extraction; run: matt features --kind musicnn --out {cache_dir} ..."
        )
    manifest = _check_manifest(folder)
    if _damaged_mel_rows(folder, manifest):
        raise DamagedCacheError(f"{folder / 'mel.npy'}: rows differ from {MANIFEST}; {_fix(folder)}")
    index = pd.read_csv(folder / "index.csv")
    ok = index[index["status"] == "ok"]
    if len(ok) < len(index):
        _warn_failures(len(index) - len(ok), len(index), folder)
    values = np.load(folder / "mel.npy", mmap_mode="r")[ok["row"].to_numpy()]
    ids = ok["track_id"].to_numpy()
    if pool is None:
        return ids, np.asarray(values, dtype=np.float32)
    if pool != "mean":
        raise ValueError(f"pool must be 'mean' or None, got {pool!r}")
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.asarray(values, dtype=np.float32), axis=1)
    columns = [f"{settings.vector}_{i}" for i in range(mean.shape[1])]
    return pd.DataFrame(mean, index=pd.Index(ids, name="track_id"), columns=columns)
