"""The study's CUDA paths, checked and timed on a GPU machine (nothing here runs without one).

Checks, each against the CPU path it must agree with:

* ``log_mel``: :func:`mattlib.features.log_mel_torch` on CUDA against librosa on the real clips of
  ``tests/data/fma_small`` (the paper's 12 kHz, 29 s, 96 x 1360), and its throughput.
* ``study``: the real study API (``experiment.load`` + ``run_bag_model``) on the demo's cached
  features and log-mel, trained on CUDA (bf16 autocast) and on the CPU with the same settings:
  accuracy of each, seconds per run, and the device the fit reports.

The musicnn port on CUDA is checked by ``tests/test_musicnn.py`` run on the GPU machine (its
``device="auto"`` picks CUDA there); the training step's throughput by ``benchmarks/training.py
--device cuda``.

Usage::

    python benchmarks/cuda_checks.py [--out outputs/benchmarks/cuda.json]

Needs the demo data and its feature cache (``make study`` makes both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mattlib import features as F  # noqa: E402
from mattlib.atomic import write_json  # noqa: E402
from mattlib.study import experiment  # noqa: E402
from mattlib.study.settings import Settings  # noqa: E402

CLIPS = sorted((ROOT / "tests" / "data" / "fma_small").glob("*/*.mp3"))


def check_log_mel() -> dict:
    """CUDA log-mel against librosa on the real clips; the largest difference in dB."""
    settings = F.MelSettings()
    ys = np.stack([F.mel_audio(clip, settings)[0] for clip in CLIPS])
    reference = np.stack([F.log_mel_librosa(y, settings) for y in ys])
    out = F.log_mel_torch(ys, settings, device="cuda").cpu().numpy()
    torch.cuda.synchronize()
    batch = np.concatenate([ys] * 16)  # 320 clips at once
    F.log_mel_torch(batch, settings, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(5):
        F.log_mel_torch(batch, settings, device="cuda")
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 5
    return {
        "clips": len(CLIPS),
        "shape": list(out.shape[1:]),
        "max_abs_diff_db": float(np.abs(out - reference).max()),
        "within_1e-3_db": bool(np.abs(out - reference).max() < 1e-3),
        "clips_per_s_batch_320": round(len(batch) / seconds, 1),
    }


def _run(settings: Settings) -> dict:
    data = experiment.load(settings)
    start = time.perf_counter()
    result = experiment.run_bag_model(data, settings, progress=False)
    seconds = time.perf_counter() - start
    metrics = result.main.metrics
    return {
        "label": result.main.label,
        "device": result.extra["device"],
        "best_epoch": result.extra["best_epoch"],
        "track_accuracy": round(100 * metrics["track_accuracy"], 2),
        "seconds": round(seconds, 1),
    }


def check_study() -> dict:
    """MLP+MATT on the 518 statistics and CRNN+MATT on the log-mel, CUDA and CPU alike."""
    base = Settings(
        data_root=ROOT / "data" / "demo",
        cache_dir=ROOT / "outputs" / "cache" / "demo",
        mel_seconds=2.0,
        epochs=40,
        patience=8,
        hidden=(256, 128),
        widths=(16, 32, 32, 32),
        pooling="matt",
    )
    runs = {}
    for name, settings in {
        "mlp_matt": base.replace(model="mlp", feature_set="all"),
        "crnn_matt": base.replace(model="crnn", feature_set="mel", max_bag_size=4),
    }.items():
        runs[name] = {device: _run(settings.replace(device=device)) for device in ("cuda", "cpu")}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="outputs/benchmarks/cuda.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_checks: no CUDA device here; run it on a GPU machine")
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "log_mel": check_log_mel(),
        "study": check_study(),
    }
    print(json.dumps(report, indent=2))
    print(f"wrote {write_json(args.out, report)}")


if __name__ == "__main__":
    main()
