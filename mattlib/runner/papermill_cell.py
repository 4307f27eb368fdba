"""One grid cell's papermill run, in a process of its own: ``python -m mattlib.runner.papermill_cell``.

The same run as papermill's command line (parameters from a YAML file, then the runner's own as
JSON), with one setting the command line does not offer: when the last cell has run, the kernel is
stopped at once (nbclient's ``shutdown_kernel="immediate"``) instead of being asked to exit. A
kernel that imported torch spends 1.5-2.5 s tearing its interpreter down, in every grid cell.
Nothing is lost by it: a cell ends only once the kernel reports idle, so every output has arrived
and every file the notebook wrote is closed.
"""

from __future__ import annotations

import argparse
import json
import logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mattlib.runner.papermill_cell", description=__doc__.split("\n")[0])
    parser.add_argument("notebook", help="the source notebook")
    parser.add_argument("output", help="where the executed notebook is written (saved as it runs)")
    parser.add_argument("--parameters-file", required=True, help="YAML mapping of the cell's parameters")
    parser.add_argument("--runner", default="{}", help="JSON mapping of parameters set by the runner")
    parser.add_argument("--cwd", required=True, help="the kernel's working directory")
    parser.add_argument("--execution-timeout", type=int, default=None, help="seconds per notebook cell")
    args = parser.parse_args(argv)

    import papermill
    import yaml

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with open(args.parameters_file) as handle:
        parameters = yaml.safe_load(handle) or {}
    parameters.update(json.loads(args.runner))
    papermill.execute_notebook(
        args.notebook,
        args.output,
        parameters=parameters,
        kernel_name="python3",
        cwd=args.cwd,
        progress_bar=False,
        execution_timeout=args.execution_timeout,
        shutdown_kernel="immediate",
    )


if __name__ == "__main__":
    main()
