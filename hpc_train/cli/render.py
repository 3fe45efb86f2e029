"""`hpc-train render SPEC -o DIR`: write the sbatch script (and Apptainer definition) to read or submit by hand."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_train.cli.common import add_resume_argument, add_spec_arguments, registry_from_args, spec_from_args
from hpc_train.jobs import prepare_job, resolve_dependency
from hpc_train.render import write_rendered


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("render", help="write DIR/job.sbatch (and DIR/apptainer.def) for plain sbatch",
                            description="Render the sbatch script and, with a container, the Apptainer "
                                        "definition. DIR becomes the job's run directory: submit with "
                                        "`sbatch DIR/job.sbatch`.")
    add_spec_arguments(parser)
    add_resume_argument(parser)
    parser.add_argument("-o", "--output", required=True, type=Path, help="directory to write into")
    parser.add_argument("--array", help="an --array range, e.g. 0-9%%2")
    parser.add_argument("--dependency", help="a --dependency on hpc-train or SLURM job ids, e.g. afterok:3f2a91c0")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec, base = spec_from_args(args)
    dependency = resolve_dependency(args.dependency, registry_from_args(args)) if args.dependency else None
    prepared = prepare_job(spec, base_dir=base, run_dir=args.output, array=args.array, dependency=dependency)
    for path in write_rendered(prepared.spec, prepared.run_dir.path, prepared.context):
        print(path)
    return 0
