"""Benchmark feature extraction: mattlib.features.bulk vs a plain per-clip librosa loop.

For each kind (fma518, mel) it measures, each configuration in a fresh Python process:

* ``plain``: FMA's way, sequential: ``librosa.load`` + librosa feature calls + scipy statistics per
  clip (for mel: ``librosa.load(sr=12000, duration=29)`` + ``melspectrogram`` + ``power_to_db``);
* ``extract`` with ``jobs=1`` and ``jobs=2`` into a fresh cache folder (pool start, writing the
  cache and the final merge included).

Every process first computes one clip untimed (librosa/numba warm-up, ~2 s), then times the run.
Reported: clips/s, wall seconds, peak RSS (``resource.getrusage`` ru_maxrss of the process and of
its largest child), the speed-up over the plain loop, and whether the values are equal (518
statistics: relative difference; mel: dB difference, ours is stored as float16).

Usage::

    .venv/bin/python benchmarks/features.py                 # tests/data + shared sample clips
    .venv/bin/python benchmarks/features.py --audio-dir DIR --repeat 1

Writes ``outputs/benchmarks/features.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mattlib.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIRS = [REPO / "tests" / "data" / "fma_small", Path("/work/shared/fma_sample/fma_small")]


def find_clips(dirs: list[Path]) -> list[Path]:
    """Unique clips (by integer file stem) below the given folders."""
    clips: dict[int, Path] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.rglob("*.mp3")):
                if p.stem.isdigit():
                    clips.setdefault(int(p.stem), p)
    return [clips[k] for k in sorted(clips)]


# --- the plain loops (FMA's way) -------------------------------------------------------------


def plain_fma518(path: Path) -> np.ndarray:
    """FMA's per-clip code path with librosa calls only (no mattlib), same definitions."""
    import librosa
    import pandas as pd
    from scipy import stats

    from mattlib.features import fma518_columns

    feats = pd.Series(index=fma518_columns(), dtype=np.float64)

    def put(name, v):
        feats[name, "mean"] = np.mean(v, axis=1)
        feats[name, "std"] = np.std(v, axis=1)
        feats[name, "skew"] = stats.skew(v, axis=1)
        feats[name, "kurtosis"] = stats.kurtosis(v, axis=1)
        feats[name, "median"] = np.median(v, axis=1)
        feats[name, "min"] = np.min(v, axis=1)
        feats[name, "max"] = np.max(v, axis=1)

    x, sr = librosa.load(path, sr=None, mono=True)
    put("zcr", librosa.feature.zero_crossing_rate(x, frame_length=2048, hop_length=512))
    cqt = np.abs(librosa.cqt(x, sr=sr, hop_length=512, bins_per_octave=12, n_bins=84, tuning=None))
    put("chroma_cqt", librosa.feature.chroma_cqt(C=cqt, n_chroma=12, n_octaves=7))
    cens = librosa.feature.chroma_cens(C=cqt, n_chroma=12, n_octaves=7)
    put("chroma_cens", cens)
    put("tonnetz", librosa.feature.tonnetz(chroma=cens))
    stft = np.abs(librosa.stft(x, n_fft=2048, hop_length=512, pad_mode="reflect"))
    put("chroma_stft", librosa.feature.chroma_stft(S=stft**2, n_chroma=12))
    put("rmse", librosa.feature.rms(S=stft))
    put("spectral_centroid", librosa.feature.spectral_centroid(S=stft))
    put("spectral_bandwidth", librosa.feature.spectral_bandwidth(S=stft))
    put("spectral_contrast", librosa.feature.spectral_contrast(S=stft, n_bands=6))
    put("spectral_rolloff", librosa.feature.spectral_rolloff(S=stft))
    mel = librosa.feature.melspectrogram(sr=sr, S=stft**2)
    put("mfcc", librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20))
    return feats.to_numpy(np.float32)


def plain_mel(path: Path) -> np.ndarray:
    import librosa

    y, sr = librosa.load(path, sr=12000, duration=29.0)
    y = librosa.util.fix_length(y, size=348000)
    M = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=96)
    return librosa.power_to_db(M, ref=1.0, top_db=80.0)


# --- one configuration (runs in its own process) ----------------------------------------------


def run_one(kind: str, mode: str, jobs: int, clips: list[Path], out_npy: Path) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    from mattlib import features as F

    tracks = {i + 1: p for i, p in enumerate(clips)}
    # warm-up (untimed): imports, numba cache, librosa's lazily built filters
    if mode == "plain":
        (plain_fma518 if kind == "fma518" else plain_mel)(clips[0])
    else:
        (F.compute_fma518 if kind == "fma518" else F.compute_mel)(clips[0])
    t0 = time.perf_counter()
    if mode == "plain":
        fn = plain_fma518 if kind == "fma518" else plain_mel
        values = np.stack([fn(p) for p in clips])
        seconds = time.perf_counter() - t0
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rep = F.extract(tracks, kind=kind, out=tmp, jobs=jobs, progress=False, device="cpu")
            seconds = time.perf_counter() - t0
            assert rep.failed == 0, rep
            if kind == "fma518":
                values = F.load_fma518(tmp).loc[list(tracks)].to_numpy(np.float32)
            else:
                store = F.load_mel(tmp, settings=F.MelSettings())
                values = np.stack([store.get(t).astype(np.float32) for t in tracks])
    np.save(out_npy, values)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dict(
        kind=kind, mode=mode, jobs=jobs, clips=len(clips), seconds=round(seconds, 3),
        clips_per_s=round(len(clips) / seconds, 3),
        maxrss_self_mb=round(self_kb / 1024, 1), maxrss_largest_child_mb=round(child_kb / 1024, 1),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio-dir", type=Path, action="append", help="folder(s) of *.mp3 (default: test + shared clips)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="passes over the clips (default: >= 60 clips for fma518, >= 200 for mel)",
    )
    ap.add_argument("--kinds", nargs="+", default=["fma518", "mel"])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "benchmarks" / "features.json")
    ap.add_argument("--_one", nargs=4, metavar=("KIND", "MODE", "JOBS", "LIST"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._one:  # child process
        kind, mode, jobs, listfile = args._one
        clips = [Path(p) for p in Path(listfile).read_text().split("\n") if p]
        res = run_one(kind, mode, int(jobs), clips, Path(listfile).with_suffix(f".{kind}.{mode}{jobs}.npy"))
        print("RESULT " + json.dumps(res))
        return res

    unique = find_clips(args.audio_dir or DEFAULT_DIRS)
    if not unique:
        sys.exit("no clips found")
    # mel is ~10x faster per clip: more clips, so the pool start does not dominate
    repeats = {k: args.repeat or max(1, -(-(60 if k == "fma518" else 200) // len(unique))) for k in args.kinds}
    load_start = os.getloadavg()
    print(f"{len(unique)} distinct clips; passes {repeats}; {os.cpu_count()} CPUs; load average {load_start}")

    results, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            clips = unique * repeats[kind]
            listfile = Path(tmp) / f"clips-{kind}.txt"
            listfile.write_text("\n".join(str(p) for p in clips))
            configs = [("plain", 1)] + [("extract", j) for j in args.jobs]
            for mode, jobs in configs:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--_one", kind, mode, str(jobs), str(listfile)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not line:
                    sys.exit(f"benchmark child failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
                res = json.loads(line[-1][7:])
                results.append(res)
                print(f"{kind:7s} {mode:8s} jobs={jobs}: {res['clips_per_s']:7.2f} clips/s "
                      f"({res['seconds']:.1f} s), peak RSS {res['maxrss_self_mb']:.0f} MB "
                      f"+ child {res['maxrss_largest_child_mb']:.0f} MB")  # fmt: skip
            plain = np.load(listfile.with_suffix(f".{kind}.plain1.npy"))
            for jobs in args.jobs:
                ours = np.load(listfile.with_suffix(f".{kind}.extract{jobs}.npy"))
                if kind == "fma518":
                    scale = np.nanmax(np.abs(plain), axis=0) + 1e-12  # per column
                    diff = float(np.nanmax(np.abs(ours - plain) / scale))
                    equal = (
                        bool(np.allclose(ours, plain, rtol=1e-4, atol=1e-5 * scale.max(), equal_nan=True))
                        and diff < 1e-4
                    )
                    checks[f"{kind}_jobs{jobs}"] = dict(max_rel_diff_vs_column_scale=float(diff), equal=equal)
                else:
                    diff = float(np.abs(ours - plain).max())
                    checks[f"{kind}_jobs{jobs}"] = dict(max_abs_diff_db=diff, equal=diff < 0.07)  # float16 storage
    summary = {}
    for kind in args.kinds:
        base = next(r for r in results if r["kind"] == kind and r["mode"] == "plain")
        for r in results:
            if r["kind"] == kind and r["mode"] == "extract":
                summary[f"{kind}_jobs{r['jobs']}_speedup_vs_plain"] = round(r["clips_per_s"] / base["clips_per_s"], 2)
    report = dict(
        command=" ".join([Path(sys.executable).name, "benchmarks/features.py", *(argv if argv is not None else sys.argv[1:])]),
        machine=dict(cpus=os.cpu_count(), platform=platform.platform(), python=platform.python_version()),
        clips=dict(distinct=len(unique), passes=repeats, total={k: len(unique) * r for k, r in repeats.items()}),
        load_average=dict(start=load_start, end=os.getloadavg()),
        results=results, speedup=summary, value_checks=checks,
        targets=dict(fma518_jobs2_speedup=">= 1.8", mel_jobs2_clips_per_s=">= 20"),
    )  # fmt: skip
    for k, v in summary.items():
        print(f"{k}: {v}x")
    for k, v in checks.items():
        print(f"values {k}: {v}")
    print(f"wrote {write_json(args.out, report)}")
    return report


if __name__ == "__main__":
    main()
