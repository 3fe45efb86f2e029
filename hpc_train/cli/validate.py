"""`hpc-train validate SPEC`: check a spec and print it resolved."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import (
    add_preflight_arguments,
    add_spec_arguments,
    naming_spec_file,
    preflight_from_args,
    spec_from_args,
)
from hpc_train.jobs import check_job
from hpc_train.spec import dump_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("validate", help="check a job spec; print it with every default filled in",
                            description="Validate a job spec and what this host can see of it: the data "
                                               "files, the scikit-learn hyperparameters, the model factory, and, when a "
                                               "SLURM controller answers, whether SLURM would take it "
                                               "(`sbatch --test-only`: partition, account, QOS, GPUs, limits). "
                                               "Exit 0 when valid, 2 with one message otherwise.")
    add_spec_arguments(parser)
    add_preflight_arguments(parser)
    parser.add_argument("--no-check-cluster", action="store_true",
                        help="do not ask SLURM whether it would take the job (a spec written for another cluster)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing when the spec is valid")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec, base = spec_from_args(args, single_job=False)
    preflight_from_args(args, spec, base)
    checked_by = "local"
    if not args.no_check_cluster:
        with naming_spec_file(args):
            checked_by = check_job(spec, base_dir=base)
    if not args.quiet:
        print(dump_spec(spec), end="")
        print(f"# {args.spec}: valid" + (" (SLURM would take it: sbatch --test-only)" if checked_by != "local" else ""))
    return 0
