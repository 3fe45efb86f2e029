"""`hpc-train wait ID`: block until the job ends; exit 0 only when it completed."""

from __future__ import annotations

import argparse
import sys

from hpc_train.cli.common import registry_from_args
from hpc_train.jobs import wait_for
from hpc_train.registry import JobRecord
from hpc_train.status import JobStatus
from hpc_train.status_document import job_status


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("wait", help="wait for a job; exit 0 only if it completed",
                            description="Wait until the job ends. Exit 0 when it completed, 1 when it "
                                        "failed or was cancelled, 124 on --timeout.")
    parser.add_argument("id")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    record = registry.get(args.id)
    ids = [c.id for c in registry.children(record.id)] or [record.id]
    show = sys.stderr.isatty()

    def on_poll(records: list[JobRecord]) -> None:
        if show:
            done = sum(r.status.is_terminal for r in records)
            first = job_status(records[0])
            print(f"\r{record.id}: {first['status']} {100 * (first['progress'] or 0):.0f}% "
                  f"eta {first['eta'] or '?'} ({done}/{len(records)} done)   ", end="", file=sys.stderr)

    records = wait_for(registry, ids, timeout=args.timeout, on_poll=on_poll)
    if show:
        print(file=sys.stderr)
    for r in records:
        print(f"{r.id} {r.status.value}")
    if not all(r.status.is_terminal for r in records):
        return 124
    return 0 if all(r.status == JobStatus.COMPLETED for r in records) else 1
