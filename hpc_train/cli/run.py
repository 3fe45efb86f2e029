"""`hpc-train run SPEC`: train in this process, no scheduler. Rerunning the same command resumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpc_train.cli.common import add_resume_argument, add_spec_arguments, print_json, spec_from_args
from hpc_train.errors import SpecError
from hpc_train.jobs import prepare_job


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="train a spec in this process (no scheduler)",
                            description="Train in this process and print the results. The run directory "
                                        "is OUTPUT_DIR/NAME unless --run-dir is given; rerunning resumes "
                                        "from its latest checkpoint.")
    add_spec_arguments(parser)
    add_resume_argument(parser)
    parser.add_argument("--run-dir", type=Path, help="where to write metrics, checkpoints and results")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hpc_train.runtime.preemption import process_guard
    from hpc_train.runtime.worker import run_spec

    process_guard().install()  # SIGUSR1/SIGTERM checkpoint; rerunning the command resumes
    spec, base = spec_from_args(args)
    from hpc_train.preflight import run_preflight

    run_preflight(spec, base, file=args.spec)  # one message naming the key, before any data is loaded
    run_dir = args.run_dir or Path(spec.output_dir) / spec.name
    prepared = prepare_job(spec, base_dir=base, run_dir=run_dir)
    try:
        results = run_spec(prepared.spec, prepared.run_dir)
    except SpecError as exc:  # found while loading data or building the model: name the spec file too
        raise (exc.with_file(args.spec) if exc.file is None else exc) from None
    finally:
        process_guard().ignore()  # a late preemption notice must not kill a finished run at exit
    if args.json:
        print_json(results)
    else:
        print_results(results)
    return 3 if results.get("preempted") else 0


def print_results(results: dict) -> None:
    keys = ["name", "model", "accuracy", "f1_score", "precision", "recall", "loss", "n_train", "n_val",
            "duration_s", "model_path"]
    width = max(len(k) for k in keys)
    for key in keys:
        if results.get(key) is not None:
            value = results[key]
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {shown}")
