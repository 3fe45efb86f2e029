"""`hpc-train cancel ID`: stop a job (and every task of a batch, sweep or pipeline)."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import registry_from_args
from hpc_train.jobs import cancel_jobs


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cancel", help="cancel a job")
    parser.add_argument("id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    record = registry.get(args.id)
    stopped = cancel_jobs(registry, record)
    print(f"cancelled {record.id}" + (f" ({len(stopped)} task(s) stopped)" if record.kind != "job" else ""))
    return 0
