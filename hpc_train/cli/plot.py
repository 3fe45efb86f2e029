"""`hpc-train plot ID -o FILE.png`: training progress of a job, or the trials of a sweep, as a PNG."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import registry_from_args
from hpc_train.monitor import TrainingMonitor


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("plot", help="plot a job's progress (or a sweep's trials) to a PNG",
                            description="Write a PNG: loss, accuracy, throughput and CPU/GPU use of a job, or "
                                        "objective per trial and parameter importance of a sweep. Prints its path.")
    parser.add_argument("id", help="job or sweep id (or unique prefix)")
    parser.add_argument("-o", "--output", metavar="FILE.png",
                        help="where to write (default: progress.png or sweep.png in the run directory)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = TrainingMonitor(registry=registry_from_args(args)).plot(args.id, args.output)
    print(path)
    return 0
