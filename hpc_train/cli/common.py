"""What the CLI verbs share: spec arguments, the registry, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpc_train.errors import SpecError
from hpc_train.registry import JobRegistry
from hpc_train.spec import JobSpec, load_spec
from hpc_train.spec.applicability import spec_warnings


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the YAML job spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a spec value, e.g. --set training.epochs=5 (repeatable)")


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume-from", metavar="PATH",
                        help="start from another run's checkpoint (a file, or a folder's newest): its weights and "
                             "optimizer state; epochs, data order and RNG start afresh (checkpoint.resume_from)")


def add_preflight_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-check-data", action="store_true",
                        help="do not look for the data files on this host (they exist only on the compute nodes); "
                             "hyperparameters and the model factory are still checked")


def preflight_from_args(args: argparse.Namespace, spec: JobSpec, base_dir: Path) -> None:
    """What the submitting host can see: data files, hyperparameters, the model factory (hpc_train.preflight)."""
    from hpc_train.preflight import run_preflight

    run_preflight(spec, base_dir, file=args.spec, check_data=not args.no_check_data)


@contextlib.contextmanager
def naming_spec_file(args: argparse.Namespace) -> Iterator[None]:
    """SpecErrors raised inside (by the scheduler's checks) name the spec file of the command line."""
    try:
        yield
    except SpecError as exc:
        raise (exc.with_file(args.spec) if exc.file is None else exc) from None


def spec_from_args(args: argparse.Namespace, *, single_job: bool = True, sweep: bool = False) -> tuple[JobSpec, Path]:
    """The validated spec and the folder its relative paths are resolved against.

    Values that cannot apply are reported on stderr, one warning each (single_job: the spec is trained
    once, so a sweep section is unused; sweep: its sweep section runs, whose trials use less of it).
    """
    overrides = list(args.overrides)
    if getattr(args, "resume_from", None):  # a path on the command line is relative to the current folder
        overrides.append("checkpoint.resume_from=" + json.dumps(str(Path(args.resume_from).expanduser().absolute())))
    spec = load_spec(args.spec, overrides)
    for found in spec_warnings(spec, single_job=single_job, sweep=sweep):
        print(f"hpc-train: warning: {found.message(args.spec)}", file=sys.stderr)
    return spec, Path(args.spec).resolve().parent


def registry_from_args(args: argparse.Namespace) -> JobRegistry:
    return JobRegistry(getattr(args, "home", None))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
