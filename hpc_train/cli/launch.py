"""`hpc-train launch -np N SPEC`: N ranks on this machine under mpirun (no scheduler)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hpc_train.cli.common import add_resume_argument, add_spec_arguments, spec_from_args
from hpc_train.commands import run_command
from hpc_train.jobs import prepare_job
from hpc_train.render import job_environment, worker_command


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("launch", help="run N ranks of a spec on this machine under mpirun",
                            description="Start N ranks under OpenMPI's mpirun (root flags handled). "
                                        "Works for ddp, horovod and model_parallel (fsdp). Rerunning resumes from the "
                                        "checkpoint.")
    add_spec_arguments(parser)
    add_resume_argument(parser)
    parser.add_argument("-np", "--np", dest="np", type=int, default=2, help="number of ranks (default 2)")
    parser.add_argument("--run-dir", type=Path, help="default OUTPUT_DIR/NAME-np<N>")
    parser.add_argument("--dry-run", action="store_true", help="print the mpirun command only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hpc_train.runtime.launch import mpirun_command  # imported here: hpc_train.runtime imports torch

    spec, base = spec_from_args(args)
    run_dir = args.run_dir or Path(spec.output_dir) / f"{spec.name}-np{args.np}"
    prepared = prepare_job(spec, base_dir=base, run_dir=run_dir, write=not args.dry_run)
    env = job_environment(prepared.spec, prepared.context)  # what a submitted job exports, resources.env too
    argv = mpirun_command(args.np, worker_command(prepared.spec, prepared.context), forward=list(env),
                          environ={**os.environ, **env})
    if args.dry_run:
        import shlex

        print(" ".join(f"{name}={shlex.quote(value)}" for name, value in env.items()), shlex.join(argv))
        return 0
    result = run_command(argv, timeout=7 * 86400, check=False, env=env)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr[-20000:])
    if result.returncode == 0:
        from hpc_train.cli.run import print_results

        print_results(prepared.run_dir.results() or {})
    return result.returncode
