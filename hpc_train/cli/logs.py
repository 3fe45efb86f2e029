"""`hpc-train logs ID [--task N]`: the job's stdout/stderr."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_train.cli.common import registry_from_args
from hpc_train.errors import UserError
from hpc_train.rundir import RunDirectory


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("logs", help="print a job's logs")
    parser.add_argument("id")
    parser.add_argument("--task", type=int, help="array task index (for batch jobs and sweeps)")
    parser.add_argument("-n", "--lines", type=int, default=200, help="last N lines of each file (0: all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    record = registry.get(args.id)
    if args.task is not None:
        children = registry.children(record.id)
        if not 0 <= args.task < len(children):
            raise UserError(f"job {record.id} has {len(children)} tasks; --task must be 0..{len(children) - 1}")
        record = children[args.task]
    rd = RunDirectory(record.run_dir)
    files = rd.log_files() + submitit_logs(rd, record.scheduler_id)
    if not files:
        print(f"no logs yet for {record.id} ({record.status.value}) in {rd.logs}")
        return 0
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        if args.lines:
            lines = lines[-args.lines:]
        print(f"==> {path} <==")
        print("\n".join(lines))
    return 0


def submitit_logs(rd: RunDirectory, scheduler_id: str | None) -> list[Path]:
    """submitit's `<id>_<rank>_log.out|err` of this job; the folder of an array holds every task's."""
    folder = rd.path / "submitit"
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{scheduler_id}_*_log.*" if scheduler_id else "*_log.*"))
