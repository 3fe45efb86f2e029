"""`hpc-train doctor [--spec FILE] [--json]`: what works here, what does not, and how to fix it."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_train.cli.common import print_json
from hpc_train.doctor import run_doctor
from hpc_train.registry import default_home
from hpc_train.spec import load_spec

EXIT_PROBLEM = 1  # a check failed; 2 stays what it is everywhere: a bad spec or command line


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "doctor", help="check this machine and cluster (and a spec's needs); one line per check",
        description="Check SLURM (client, controller, accounting, partitions and GPUs, srun's PMIx), MPI "
                    "(mpirun vs mpi4py), Horovod's build, GPUs (CUDA, NCCL), Apptainer, the registry and the "
                    "filesystems of HPC_TRAIN_HOME and the checkpoint folder. ✓ works, ✗ a problem (with a "
                    "HINT), ! works with a consequence, - does not apply. Without --spec, only parts that are "
                    "installed but broken fail; with --spec, whatever the spec needs must be there. Exit 0 "
                    "when nothing failed, 1 when a line is ✗, 2 for a bad spec.")
    parser.add_argument("--spec", help="also check what this job spec needs (partition, GPUs, Horovod, "
                                       "Apptainer, MPI)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a spec value (with --spec)")
    parser.add_argument("--check", dest="only", action="append", default=[], metavar="WORD",
                        help="run only the checks whose name contains WORD (repeatable), e.g. --check slurm")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.overrides) if args.spec else None
    home = Path(args.home) if args.home else default_home()
    if spec is None:
        checkpoint_dir = Path("runs").absolute()
    else:
        checkpoint_dir = Path(spec.checkpoint.dir or spec.output_dir).expanduser().absolute()
    report = run_doctor(spec, home=home, checkpoint_dir=checkpoint_dir, spec_file=args.spec, only=args.only)
    if args.json:
        print_json(report.to_json())
    else:
        print(report.text())
    return 0 if report.healthy else EXIT_PROBLEM
