"""Training-step throughput of MATT bag models (bags / s) on the CPU and, if present, a CUDA GPU.

One *step* = forward with the label queries + cross-entropy + backward + AdamW update on a
batch of random padded bags (data loading excluded). Every bag has ``instances`` instances
(the paper's album bags average about four tracks). Reported per configuration: seconds per
step (median over the timed steps, after warm-up), bags / s, instances / s and peak memory
(process ``ru_maxrss`` -- cumulative over the run, so read it in order -- and, on CUDA,
``torch.cuda.max_memory_allocated`` for that configuration alone).

Configurations
--------------
* ``mlp_matt``: MLP(518 -> 256) + MATT, 16 bags.
* ``crnn_matt_demo`` / ``crnn_tf_matt_demo``: demo clips 96 x 469, widths (16, 32, 32, 32).
* ``crnn_matt_paper``: 96 x 1360, widths (64, 128, 128, 128) -- on the CPU this costs seconds
  per step, so only a few steps (and a smaller batch) are timed.
* On CUDA (bf16 autocast): ``mlp_matt``, ``crnn_matt_paper``, ``crnn_tf_matt_paper`` with
  16 bags x 4 instances.

Usage::

    python benchmarks/training.py                  # CPU (2 threads) + CUDA if available
    python benchmarks/training.py --quick          # fewer steps
    python benchmarks/training.py --device cpu

Writes ``outputs/benchmarks/training.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mattlib.atomic import write_json  # noqa: E402
from mattlib.models.encoders import make_encoder  # noqa: E402
from mattlib.models.mil import BagModel, make_pooling  # noqa: E402
from mattlib.models.spec import ModelSpec  # noqa: E402

N_CLASSES = 16
PAPER = {"widths": ModelSpec().widths}  # the study's CRNN widths


def _rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def bench(
    *,
    name: str,
    encoder: str,
    input_shape: tuple[int, ...],
    enc_kw: dict,
    bags: int,
    instances: int,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict:
    """Time ``steps`` training steps (after ``warmup``) of encoder + MATT on random bags."""
    torch.manual_seed(0)
    enc = make_encoder(encoder, input_shape=input_shape, **enc_kw)
    model = BagModel(enc, make_pooling("matt", in_dim=enc.out_dim, n_classes=N_CLASSES)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(bags, instances, *input_shape, device=device)
    if len(input_shape) == 2:
        x = x.half()  # the mel cache is float16
    mask = torch.ones(bags, instances, dtype=torch.bool, device=device)
    mask[::2, -1] = False  # some padding, as in real batches
    labels = torch.randint(0, N_CLASSES, (bags,), device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits, _ = model(x, mask, labels)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    n_inst = int(mask.sum())
    out = {
        "name": name,
        "device": str(device),
        "encoder": encoder,
        "input_shape": list(input_shape),
        "encoder_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in enc_kw.items()},
        "bags_per_step": bags,
        "max_instances_per_bag": instances,
        "instances_per_step": n_inst,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "seconds_per_step": sec,
        "bags_per_second": bags / sec,
        "instances_per_second": n_inst / sec,
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_rss_mib": _rss_mib(),
    }
    if cuda:
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(
        f"{name:22s} {str(device):6s} {sec:8.3f} s/step  {bags / sec:8.1f} bags/s  "
        f"rss {out['peak_rss_mib']:.0f} MiB" + (f"  cuda {out['peak_cuda_allocated_mib']:.0f} MiB" if cuda else ""),
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, then CUDA when available"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--skip-cpu-paper", action="store_true", help="skip the slow CPU paper-size CRNN")
    parser.add_argument("--out", default="outputs/benchmarks/training.json")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    q = args.quick
    results = []
    run_cpu = args.device in ("auto", "cpu")
    run_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")

    demo = {"widths": (16, 32, 32, 32)}
    if run_cpu:
        cpu = torch.device("cpu")
        results.append(
            bench(
                name="mlp_matt",
                encoder="mlp",
                input_shape=(518,),
                enc_kw={"hidden": (256,)},
                bags=16,
                instances=4,
                steps=20 if q else 100,
                warmup=3,
                device=cpu,
            )
        )
        for enc in ("crnn", "crnn_tf"):
            results.append(
                bench(
                    name=f"{enc}_matt_demo",
                    encoder=enc,
                    input_shape=(96, 469),
                    enc_kw=demo,
                    bags=16,
                    instances=4,
                    steps=2 if q else 5,
                    warmup=1,
                    device=cpu,
                )
            )
        if not args.skip_cpu_paper:
            results.append(
                bench(
                    name="crnn_matt_paper",
                    encoder="crnn",
                    input_shape=(96, 1360),
                    enc_kw=PAPER,
                    bags=4,
                    instances=4,
                    steps=1 if q else 2,
                    warmup=1,
                    device=cpu,
                )
            )
    if run_cuda:
        gpu = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        results.append(
            bench(
                name="mlp_matt",
                encoder="mlp",
                input_shape=(518,),
                enc_kw={"hidden": (256,)},
                bags=16,
                instances=4,
                steps=50 if q else 200,
                warmup=10,
                device=gpu,
            )
        )
        for enc in ("crnn", "crnn_tf"):
            results.append(
                bench(
                    name=f"{enc}_matt_paper",
                    encoder=enc,
                    input_shape=(96, 1360),
                    enc_kw=PAPER,
                    bags=16,
                    instances=4,
                    steps=10 if q else 30,
                    warmup=3,
                    device=gpu,
                )
            )

    report = {
        "benchmark": "training step (forward + backward + AdamW) of encoder + MATT, random bags",
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "note": "peak_rss_mib is the process peak so far (cumulative, in run order)",
        "results": results,
    }
    print(f"wrote {write_json(args.out, report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
