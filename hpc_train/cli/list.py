"""`hpc-train list`: recent jobs from the registry."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import print_json, registry_from_args
from hpc_train.cli.status import print_table
from hpc_train.jobs import refresh
from hpc_train.status_document import job_status


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="list recent jobs")
    parser.add_argument("-n", "--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    records = refresh(registry, registry.list(limit=args.limit))
    summaries = [job_status(r) for r in records]
    if args.json:
        print_json(summaries)
    elif summaries:
        print_table(summaries)
    else:
        print(f"no jobs yet in {registry.path}")
    return 0
