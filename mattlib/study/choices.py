"""The study's named choices, importable without torch or librosa (the grid runner validates
params files with them before anything runs). Tests keep them equal to the registries in
:mod:`mattlib.features`, :mod:`mattlib.models.encoders`, :mod:`mattlib.models.mil` and :mod:`mattlib.models.baselines`.
"""

#: Table I's feature sets (FMA's 518 statistics, grouped); see mattlib.features.FEATURE_SETS.
FEATURE_SETS = (
    "chroma",
    "tonnetz",
    "mfcc",
    "spectral_centroid",
    "spectral_bandwidth",
    "spectral_contrast",
    "spectral_rolloff",
    "rms_energy",
    "zero_crossing",
    "mfcc+contrast",
    "mfcc+contrast+centroid",
    "all",
    "mel",
)
#: Classic baselines (scikit-learn, on a feature set).
BASELINES = ("lr", "knn", "svm", "mlp")
#: Track encoders (torch): mlp on a feature set, crnn / crnn_tf on the log-mel.
ENCODERS = ("mlp", "crnn", "crnn_tf")
#: Every model name a notebook accepts.
MODELS = ("lr", "knn", "svm", "mlp", "crnn", "crnn_tf")
#: Bag poolings: none = track-level model, late = late fusion (track probabilities averaged).
POOLINGS = ("none", "late", "mean", "max", "matt", "gated")
