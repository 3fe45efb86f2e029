"""`hpc-train cancel ID`: stop a job (and every task of a batch or sweep)."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import registry_from_args
from hpc_train.jobs import get_scheduler
from hpc_train.registry import JobRecord
from hpc_train.status import JobStatus


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cancel", help="cancel a job")
    parser.add_argument("id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    record = registry.get(args.id)
    targets = registry.children(record.id) or [record]
    live: dict[str, list[JobRecord]] = {}
    for target in targets:
        if not target.status.is_terminal and target.executor != "none":
            live.setdefault(target.executor, []).append(target)
    for executor, group in live.items():
        get_scheduler(executor).cancel_many(group)
        for target in group:
            registry.update(target.id, status=JobStatus.CANCELLED)
    if record not in targets:
        registry.update(record.id, status=JobStatus.CANCELLED)
    print(f"cancelled {record.id}")
    return 0
