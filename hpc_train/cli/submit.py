"""`hpc-train submit SPEC`: submit through submitit (SLURM or local) or as a plain sbatch script."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import (
    add_preflight_arguments,
    add_resume_argument,
    add_spec_arguments,
    naming_spec_file,
    preflight_from_args,
    registry_from_args,
    spec_from_args,
)
from hpc_train.jobs import EXECUTORS, resolve_dependency, submit_job
from hpc_train.scheduler.base import SubmissionPlan


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("submit", help="submit a spec as a job; prints the job id last",
                            description="Submit a job. --executor auto (default) uses SLURM when sbatch "
                                        "answers, this machine otherwise. The last word printed is the job id. "
                                        "The spec is checked first as `validate` does (data files, "
                                        "hyperparameters, model factory) and, for SLURM, with `sbatch --test-only` "
                                        "(partition, account, QOS, GPUs, limits); nothing is submitted when it fails.")
    add_spec_arguments(parser)
    add_resume_argument(parser)
    add_preflight_arguments(parser)
    parser.add_argument("--executor", choices=EXECUTORS, default="auto")
    parser.add_argument("--sbatch", action="store_true", help="submit the rendered script with sbatch "
                                                               "(same as --executor sbatch)")
    parser.add_argument("--dry-run", action="store_true", help="print exactly what would be submitted; submit nothing")
    parser.add_argument("--dependency", help="SLURM dependency on hpc-train or SLURM job ids, e.g. afterok:3f2a91c0")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec, base = spec_from_args(args)
    preflight_from_args(args, spec, base)
    executor = "sbatch" if args.sbatch else args.executor
    registry = registry_from_args(args)
    dependency = resolve_dependency(args.dependency, registry) if args.dependency else None
    with naming_spec_file(args):
        result = submit_job(spec, executor=executor, base_dir=base, registry=registry, dry_run=args.dry_run,
                            dependency=dependency)
    if isinstance(result, SubmissionPlan):
        print(result.describe())
        return 0
    print(f"submitted {result.name} to {result.executor} (scheduler id {result.scheduler_id}), "
          f"run dir {result.run_dir}")
    print(f"job id: {result.id}")
    return 0
