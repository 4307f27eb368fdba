"""musicnn: the original TensorFlow implementation against the torch port, as whole processes.

    .venv/bin/python benchmarks/musicnn.py --tf-python /tmp/tfvenv/bin/python [--threads 2] [--repeat 3]

Three peers, each one process from start to exit (imports, weights, decoding, network), on the 20
real clips of tests/data with ``--threads`` threads:

* ``tf-extractor``: ``musicnn.extractor.extractor()`` as shipped, once per clip (it rebuilds the
  graph and reloads the weights every time; float16 log-mel);
* ``tf-graph``: the original graph built and restored once, fed clip after clip, with fix 1
  (float32 log-mel) and every patch's own values (``tests/data/musicnn/make_reference.py``);
* ``port``: ``matt features --kind musicnn``'s path (``mattlib.features.extract``): two worker
  processes decode while the parent runs the torch network on the patches of many clips.

``tf-graph`` and ``port`` run ``--repeat`` times, alternating, and keep their median runs.
Prints clips/s of each, the port's ratio to ``tf-graph``, and the largest difference between the
port's and ``tf-graph``'s values; writes ``outputs/benchmarks/musicnn.json``.  The TensorFlow
peers need a Python with TensorFlow and musicnn (``--tf-python``; see make_reference.py for the
venv); without it they are skipped, saying so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mattlib.atomic import write_json

ROOT = Path(__file__).resolve().parent.parent
CLIPS = sorted((ROOT / "tests" / "data" / "fma_small").glob("*/*.mp3"))
VECTOR = "penultimate"  # what the port stores (the study's default); compared with tf-graph's

_TF_PEER = r"""
import importlib.util, os, sys, time
import numpy as np
mode, model, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
clips = sys.argv[5:]
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
_Session = tf.compat.v1.Session
tf.compat.v1.Session = lambda *a, **k: _Session(*a, config=config, **k)  # the thread count, nothing else
values = {"penultimate": []}
if mode == "tf-extractor":
    from musicnn.extractor import extractor
    for clip in clips:
        taggram, _, feats = extractor(clip, model=model, extract_features=True)
        values["penultimate"].append(feats["penultimate"])
else:
    spec = importlib.util.spec_from_file_location("make_reference", os.environ["MUSICNN_REFERENCE_SCRIPT"])
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    graph = ref.Graph(model)
    for clip in clips:
        taggram, penultimate, _, _ = graph(ref.patches(clip))
        values["penultimate"].append(penultimate)
np.savez(out, **{k: np.concatenate(v).astype(np.float32) for k, v in values.items()})
"""


def _port_peer(model: str, threads: int, out: str, clips: list[str]) -> None:
    """The port, in this process: extract both vectors into a scratch cache, as ``matt features``."""
    # this script's folder is first on sys.path, and this file is named musicnn.py: let the
    # installed musicnn package (the weights) be found instead
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.modules.pop("musicnn", None)
    import torch

    torch.set_num_threads(threads)
    from mattlib import features
    from mattlib.features import musicnn

    tracks = {int(Path(c).stem): c for c in clips}
    with tempfile.TemporaryDirectory() as cache:
        settings = musicnn.MusicnnSettings(model=model, vector=VECTOR)
        features.extract(tracks, kind="musicnn", out=cache, jobs=2, settings=settings, progress=False)
        _, v = musicnn.load_musicnn_features(cache, settings, pool=None)
    v = v.reshape(-1, v.shape[-1])
    np.savez(out, **{VECTOR: v[~np.isnan(v).any(1)]})


def _run_peer(name: str, python: str, model: str, threads: int, clips: list[Path], scratch: Path) -> dict:
    out = scratch / f"{name}.npz"
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="3",
        MUSICNN_REFERENCE_SCRIPT=str(ROOT / "tests" / "data" / "musicnn" / "make_reference.py"),
    )
    if name == "port":
        cmd = [python, __file__, "--peer", "port", "--model", model, "--threads", str(threads), "--out", str(out)]
    else:
        cmd = [python, "-c", _TF_PEER, name, model, str(threads), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, *map(str, clips)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with np.load(out) as z:
        values = {k: z[k] for k in z.files}
    return {"seconds": seconds, "clips_per_s": len(clips) / seconds, "values": values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tf-python", default=None, help="a Python with tensorflow, tf_keras and musicnn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs of tf-graph and the port (the median is kept)")
    p.add_argument("--model", default="MSD_musicnn")
    p.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks" / "musicnn.json"))
    p.add_argument("--peer", default=None, help=argparse.SUPPRESS)  # internal: run one peer
    p.add_argument("clips", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer == "port":
        return _port_peer(args.model, args.threads, args.out, args.clips)

    peers = ["port"]
    if args.tf_python and Path(args.tf_python).exists():
        peers = ["tf-extractor", "tf-graph", "port"]
    else:
        print(
            f"TensorFlow peers skipped: no --tf-python ({args.tf_python or 'not given'}); see tests/data/musicnn/make_reference.py"
        )
    results, runs = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        # the fair pair alternates, --repeat times each, and each keeps its median run; the
        # shipped extractor (about 45 s) runs once
        order = [p for p in peers if p == "tf-extractor"] + [p for p in peers if p != "tf-extractor"] * args.repeat
        for name in order:
            python = sys.executable if name == "port" else args.tf_python
            run = _run_peer(name, python, args.model, args.threads, CLIPS, Path(scratch))
            runs.setdefault(name, []).append(run)
            print(f"{name:13s} {run['seconds']:6.1f} s  {run['clips_per_s']:.2f} clips/s")
    for name, done in runs.items():
        results[name] = sorted(done, key=lambda r: r["seconds"])[len(done) // 2]
    summary = {
        "clips": len(CLIPS),
        "threads": args.threads,
        "model": args.model,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "repeat": args.repeat,
        "peers": {
            k: {"seconds": v["seconds"], "clips_per_s": v["clips_per_s"], "runs_s": [r["seconds"] for r in runs[k]]}
            for k, v in results.items()
        },
    }
    if "tf-graph" in results:
        port, tf = results["port"]["values"], results["tf-graph"]["values"]
        summary["ratio_port_to_tf_graph"] = results["port"]["clips_per_s"] / results["tf-graph"]["clips_per_s"]
        summary["ratio_port_to_tf_extractor"] = results["port"]["clips_per_s"] / results["tf-extractor"]["clips_per_s"]
        diff = np.abs(port[VECTOR] - tf[VECTOR]).max()
        summary["vector"] = VECTOR
        summary["max_abs_difference"] = float(diff)
        summary["max_difference_relative_to_scale"] = float(diff / np.abs(tf[VECTOR]).max())
        print(
            f"port / tf-graph: {summary['ratio_port_to_tf_graph']:.2f}x, port / tf-extractor: "
            f"{summary['ratio_port_to_tf_extractor']:.2f}x; largest difference port vs tf-graph: "
            + f"{VECTOR} {summary['max_abs_difference']:.2e} ({summary['max_difference_relative_to_scale']:.1e} of its scale)"
        )
    print(f"wrote {write_json(args.out, summary)}")


if __name__ == "__main__":
    main()
