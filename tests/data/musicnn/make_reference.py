"""Reference outputs of the original musicnn (TensorFlow) on the 20 real clips of tests/data.

Run once, in a scratch venv that has TensorFlow (never this project's venv)::

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu tf_keras librosa soundfile
    /tmp/tfvenv/bin/pip install --no-deps musicnn==0.1.0
    TF_USE_LEGACY_KERAS=1 /tmp/tfvenv/bin/python tests/data/musicnn/make_reference.py

It builds musicnn's own graph (``musicnn.models.define_model``), restores the checkpoint shipped in
the wheel, and evaluates every patch of every clip, with musicnn's own preprocessing
(``librosa.load`` at 16 kHz, ``librosa.feature.melspectrogram`` n_fft 512, hop 256, 96 bands,
patches of 187 frames without overlap) and two departures from ``musicnn.extractor``:

1. the log compression ``log10(10000 x + 1)`` is computed in float32 (the original rounds ``x``
   to float16 first, which overflows to inf);
2. every patch's own ``penultimate`` is returned (the original repeats the first patch's).

Writes ``<model>.npz`` beside this script: ``track_id`` (20,), ``n_patches`` (20,), and, stacked
over all patches of all clips in track order, ``taggram`` (P, 50), ``penultimate`` (P, 200),
``mean_pool`` and ``max_pool`` (P, 753), float32.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.compat.v1.disable_eager_execution()

from musicnn import configuration as config  # noqa: E402
from musicnn import models  # noqa: E402

HERE = Path(__file__).resolve().parent
CLIPS = sorted((HERE.parent / "fma_small").glob("*/*.mp3"))
N_FRAMES = 187


def patches(path: Path) -> np.ndarray:
    """musicnn's ``batch_data`` with fix 1: (n_patches, 187, 96) float32."""
    audio, sr = librosa.load(str(path), sr=config.SR)
    rep = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T
    rep = np.log10(10000 * rep.astype(np.float32) + 1).astype(np.float32)
    n = (rep.shape[0] - N_FRAMES) // N_FRAMES + 1
    return np.stack([rep[i * N_FRAMES : (i + 1) * N_FRAMES] for i in range(n)])


class Graph:
    """The original graph, built and restored once, fed clip after clip."""

    def __init__(self, model: str):
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            self.x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, config.N_MELS])
            self.is_training = tf.compat.v1.placeholder(tf.bool)
            y, _, _, _, _, _, mean_pool, max_pool, penultimate = models.define_model(
                self.x, self.is_training, model, 50
            )
            self.outputs = [tf.nn.sigmoid(y), penultimate, mean_pool, max_pool]
        self.sess = tf.compat.v1.Session()
        self.sess.run(tf.compat.v1.global_variables_initializer())
        import musicnn

        tf.compat.v1.train.Saver().restore(self.sess, os.path.dirname(musicnn.__file__) + "/" + model + "/")

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.sess.run(self.outputs, feed_dict={self.x: batch, self.is_training: False})


def main(models_=("MSD_musicnn", "MTT_musicnn")) -> None:
    for model in models_:
        graph = Graph(model)
        ids, counts, outs = [], [], {k: [] for k in ("taggram", "penultimate", "mean_pool", "max_pool")}
        for path in CLIPS:
            batch = patches(path)
            for key, value in zip(outs, graph(batch)):
                outs[key].append(np.asarray(value, dtype=np.float32))
            ids.append(int(path.stem))
            counts.append(len(batch))
        np.savez_compressed(
            HERE / f"{model}.npz",
            track_id=np.array(ids),
            n_patches=np.array(counts),
            **{k: np.concatenate(v) for k, v in outs.items()},
        )
        print(f"{model}: {len(ids)} clips, {sum(counts)} patches -> {HERE / (model + '.npz')}")


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or ("MSD_musicnn", "MTT_musicnn"))
