"""``matt``: the study's command line, a thin face over the library.

::

    matt demo-data --out DIR [--tracks N] [--seconds S] [--seed K]
    matt demo-data --out DIR --fma-medium-features [--seed K]
    matt features  --root FMA_ROOT --subset medium --kind fma518|mel --out DIR [--jobs N] [--repair]
    matt features  --audio-dir DIR --kind fma518|mel --out DIR [--jobs N]
    matt run       params/demo.yaml [--jobs N] [--force] [--data ROOT]
    (features and run also take --executor local|ray [--address RAY_ADDRESS])
    matt report    outputs/<run> [--jobs N]
    matt study     [--data ROOT] [--params params/demo.yaml] [--jobs N]
    matt lab       [--port 8888] [--no-browser]
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import warnings
from pathlib import Path

from mattlib.errors import MattError
from mattlib.executors import EXECUTORS, JOBS

DEFAULT_DEMO_ROOT = Path("data/demo")
#: Exit status after an interrupt: 128 + the signal's number, as a shell reports it.
_INTERRUPT_STATUS = {"SIGINT": 130, "SIGTERM": 143}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the grid stops its cells, the summary is printed)."""

    signame = "SIGTERM"


def _on_sigterm(signum, frame):
    raise _Terminated("SIGTERM")


def _demo_data(args: argparse.Namespace) -> int:
    from mattlib.data import demo

    if args.fma_medium_features:
        if args.tracks is not None or args.seconds is not None:
            raise demo.DemoError("--fma-medium-features has FMA medium's size and no audio: drop --tracks/--seconds")
        print(
            f"FMA-medium-shaped metadata and features.csv written to "
            f"{demo.generate_fma_medium_features(args.out, seed=args.seed)}"
        )
        return 0
    kwargs = {"seed": args.seed}
    if args.tracks is not None:
        kwargs["n_tracks"] = args.tracks
    if args.seconds is not None:
        kwargs["seconds"] = args.seconds
    root = demo.generate_demo(args.out, **kwargs)
    print(f"demo dataset written to {root}")
    return 0


def _feature_kind(value: str) -> str:
    """``--kind``: a key of the feature-kind registry (read only when the option is given)."""
    from mattlib.features.kinds import KINDS

    if value not in KINDS:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(KINDS)})")
    return value


def _features(args: argparse.Namespace) -> int:
    from mattlib import executors, features
    from mattlib.study.settings import Settings

    settings = None
    if args.kind == "mel":  # the --mel-* flags are Settings' mel_* fields; Settings validates them
        given = {k: v for k, v in vars(args).items() if k.startswith("mel_") and v is not None}
        settings = Settings.from_parameters(given).mel
    if args.audio_dir is None and args.root is None:
        raise SystemExit("matt features: give --root FMA_ROOT (with --subset) or --audio-dir DIR")
    common = dict(kind=args.kind, out=args.out, jobs=args.jobs, settings=settings, repair=args.repair)
    with executors.open_executor(args.executor, address=args.address) as executor:
        if args.audio_dir is not None:
            report = features.extract_audio_dir(args.audio_dir, executor=executor, **common)
        else:
            report = features.extract_subset(args.root, subset=args.subset, executor=executor, **common)
    print(report)
    return 1 if report.failed and not report.done and not report.reused else 0


def _run(args: argparse.Namespace) -> int:
    from mattlib import executors, runner

    spec = runner.load_grid(args.params, data_root=args.data)  # a bad params file fails before Ray starts
    with executors.open_executor(args.executor, address=args.address) as executor:
        summary = runner.run_grid(spec, jobs=args.jobs, force=args.force, timeout=args.cell_timeout, executor=executor)
    print(summary.describe())
    if summary.interrupted:
        return _INTERRUPT_STATUS[summary.interrupted]
    return 0 if summary.ok else 1


def _report(args: argparse.Namespace) -> int:
    from mattlib.views import report

    index = report.build_report(args.run_dir, jobs=args.jobs)
    print(f"report: {index}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from mattlib import pipeline

    index, ok = pipeline.run_study(
        params=args.params, data_root=args.data, jobs=args.jobs, force=args.force, cell_timeout=args.cell_timeout
    )
    print(f"\nreport: {index}")
    return 0 if ok else 1


def _lab(args: argparse.Namespace) -> int:
    """JupyterLab at the project root, with this environment's kernel; relative paths in the
    notebooks resolve against the same root (``MATT_HOME``) whatever folder a notebook is in."""
    from mattlib import paths

    root = paths.project_root()
    # port_retries=0: the port printed below is the one served, or JupyterLab exits saying it is taken
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.port={args.port}",
        "--ServerApp.port_retries=0",
    ]
    if args.no_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to start as root without it
    os.environ["MATT_HOME"] = str(root)
    print(
        f"JupyterLab at {root} on port {args.port} (http://localhost:{args.port}/lab; kernel: {sys.executable}); "
        "open notebooks/ and run any notebook"
    )
    os.execv(sys.executable, command)
    return 0  # not reached


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer from 1 to 65535, got {text!r}")
    return port


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where the work runs: local processes (default) or Ray tasks",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="RAY_ADDRESS",
        help="join this Ray cluster (default with --executor ray: start Ray on this machine)",
    )


def _jobs_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--jobs", type=int, default=JOBS, metavar="N", help=f"{what} (default {JOBS})")


def _cell_timeout_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cell-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail a notebook cell that runs longer than this",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matt", description="The MATT music-genre study.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="generate the FMA-format demo dataset")
    p.add_argument("--out", type=Path, default=DEFAULT_DEMO_ROOT)
    p.add_argument("--tracks", type=int, default=None, help="number of tracks")
    p.add_argument("--seconds", type=float, default=None, help="clip duration (s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fma-medium-features",
        action="store_true",
        help="FMA medium's shape (25,000 tracks) with a 518-column features.csv, no audio",
    )
    p.set_defaults(func=_demo_data)

    p = sub.add_parser("features", help="extract FMA's 518 statistics or the log-mel")
    p.add_argument("--root", type=Path, help="dataset root: FMA (fma_metadata/, fma_<subset>/) or collection.csv")
    p.add_argument("--subset", default="medium", choices=["small", "medium", "large"])
    p.add_argument("--audio-dir", type=Path, default=None, help="extract every *.mp3 below DIR")
    p.add_argument("--kind", required=True, type=_feature_kind, help="fma518, mel, ... (mattlib.features.kinds)")
    p.add_argument("--out", type=Path, required=True)
    _jobs_argument(p, "extraction worker processes")
    p.add_argument(
        "--repair",
        action="store_true",
        help="re-extract what no longer matches the cache's manifest (damaged or cut files)",
    )
    from mattlib.study.settings import Settings

    for name in Settings.names():  # one flag per mel_* setting, typed like its default
        if name.startswith("mel_"):
            default = getattr(Settings, name)
            flag = "--" + name.replace("_", "-")
            p.add_argument(flag, dest=name, type=type(default), default=None, help=f"default {default}")
    _executor_arguments(p)
    p.set_defaults(func=_features)

    p = sub.add_parser("run", help="execute a papermill grid from params/*.yaml")
    p.add_argument("params", type=Path)
    _jobs_argument(p, "cells at once")
    p.add_argument("--force", action="store_true", help="re-run cells that already finished")
    p.add_argument("--data", type=Path, default=None, help="override data_root")
    _cell_timeout_argument(p)
    _executor_arguments(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("report", help="gather a run's metrics into tables, figures and HTML")
    p.add_argument("run_dir", type=Path)
    _jobs_argument(p, "processes rendering the notebooks")
    p.set_defaults(func=_report)

    p = sub.add_parser("study", help="demo data (if absent) + features + grid + report")
    p.add_argument("--data", type=Path, default=None, help="data root (default: the params file's)")
    p.add_argument("--params", type=Path, default=Path("params/demo.yaml"))
    _jobs_argument(p, "extraction worker processes, cells at once, notebooks rendered")
    p.add_argument("--force", action="store_true")
    _cell_timeout_argument(p)
    p.set_defaults(func=_study)

    p = sub.add_parser("lab", help="JupyterLab at the project root with this environment's kernel")
    p.add_argument("--port", type=_port, default=8888, help="1-65535; the port is used as given or not at all")
    p.add_argument("--no-browser", action="store_true")
    p.set_defaults(func=_lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors are one line on stderr (exit 2), an interrupt exits 130 (143 on
    SIGTERM) with what was kept."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # a warning is one line on the console too (not the file and source line that raised it);
    # restored on return, for callers of main() in a process of their own (tests, scripts)
    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_, **__: f"matt {args.command}: warning: {message}\n"
    try:
        return args.func(args)
    except KeyboardInterrupt as interrupt:
        name = getattr(interrupt, "signame", "SIGINT")
        print(
            f"matt {args.command}: interrupted by {name}; finished work is kept, run the same "
            "command again to continue",
            file=sys.stderr,
        )
        return _INTERRUPT_STATUS[name]
    except OSError as err:
        print(f"matt {args.command}: error: {_describe_os_error(err, writing=_written_folder(args))}", file=sys.stderr)
        return 2
    except MattError as err:  # bad input, named with its fix; any other exception is a bug and keeps its traceback
        print(f"matt {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous


def _written_folder(args: argparse.Namespace) -> str:
    """The folder a command writes into, named when an OSError carries no path of its own."""
    if getattr(args, "out", None):
        return str(args.out)
    if getattr(args, "run_dir", None):
        return str(args.run_dir)
    if getattr(args, "params", None):
        return f"the output_root of {args.params}"
    return ""


def _describe_os_error(err: OSError, *, writing: str = "") -> str:
    """One line: what failed, on which path (or, without one, the folder being written), and what to do."""
    where = f": {err.filename}" if err.filename else (f" (writing under {writing})" if writing else "")
    what = err.strerror or str(err)
    advice = {
        errno.ENOSPC: "free disk space (or point --out / output_root elsewhere) and run again",
        errno.EDQUOT: "free disk space (or point --out / output_root elsewhere) and run again",
        errno.EROFS: "the file system is read-only: choose a writable folder",
        errno.EACCES: "no permission: choose a folder you can write, or fix its permissions",
        errno.EPERM: "no permission: choose a folder you can write, or fix its permissions",
        errno.ENOENT: "check the path",
    }.get(err.errno, "check the path and the disk, then run again")
    return f"{what}{where} ({advice})"


if __name__ == "__main__":
    sys.exit(main())
