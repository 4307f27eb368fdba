"""Stage 2, features: FMA's 518 statistics and the paper's log-mel, extracted in bulk into a cache.

Two kinds of features (:data:`KINDS`, see :mod:`mattlib.features.kinds`), both extracted in bulk
by :func:`extract` into a cache folder:

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

from mattlib.features.bulk import ExtractionReport, extract, extract_audio_dir, extract_subset
from mattlib.features.kinds import KINDS, FeatureError, FeatureKind, feature_kind
from mattlib.features.mel import (
    MelSettings,
    compute_mel,
    log_mel,
    log_mel_librosa,
    log_mel_torch,
    mel_audio,
    mel_filterbank,
)
from mattlib.features.projection import project_2d
from mattlib.features.sets import FEATURE_SETS, feature_set_dim, select_feature_set
from mattlib.features.stats import (
    FMA_FEATURE_SIZES,
    FMA_STATISTICS,
    compute_fma518,
    fma518_columns,
    fma518_groups,
    fma518_vector,
)
from mattlib.features.store import (
    DamagedCacheError,
    MelStore,
    cached_mels,
    load_fma518,
    load_mel,
    mel_dir,
    nearest_mel,
)

__all__ = [
    "DamagedCacheError",
    "project_2d",
    "FMA_FEATURE_SIZES",
    "FMA_STATISTICS",
    "FEATURE_SETS",
    "KINDS",
    "FeatureError",
    "FeatureKind",
    "feature_kind",
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
    "cached_mels",
    "nearest_mel",
    "load_mel",
    "load_fma518",
    "extract",
    "extract_subset",
    "extract_audio_dir",
]
