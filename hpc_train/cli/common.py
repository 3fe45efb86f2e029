"""What the CLI verbs share: spec arguments, the registry, status display."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpc_train.errors import SpecError
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.spec import JobSpec, load_spec


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the YAML job spec")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a spec value, e.g. --set training.epochs=5 (repeatable)")


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


def spec_from_args(args: argparse.Namespace) -> tuple[JobSpec, Path]:
    """The validated spec and the folder its relative paths are resolved against."""
    spec = load_spec(args.spec, args.overrides)
    return spec, Path(args.spec).resolve().parent


def registry_from_args(args: argparse.Namespace) -> JobRegistry:
    return JobRegistry(getattr(args, "home", None))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def job_summary(record: JobRecord) -> dict[str, Any]:
    """The stable `status --json` document of one job (documented in README.md)."""
    rd = RunDirectory(record.run_dir)
    progress = rd.progress() or {}
    own = rd.status_record() or {}
    summary = record.to_json()
    summary.update({
        "progress": progress.get("fraction", 1.0 if record.status.value == "completed" else 0.0),
        "eta": format_eta(eta_seconds(progress, record)),
        "epoch": progress.get("epoch"),
        "error": own.get("error") if record.status.value in ("failed", "cancelled") else None,
        "traceback": own.get("traceback") if record.status.value == "failed" else None,
        "restarts": own.get("restarts", 0),
    })
    return summary


def eta_seconds(progress: dict[str, Any], record: JobRecord) -> float | None:
    """Seconds left, from the job's measured step rate; 0 when done; None when unknown."""
    if record.status.is_terminal:
        return 0.0
    rate = progress.get("steps_per_s")
    total, step = progress.get("total_steps"), progress.get("step")
    if not rate or total is None or step is None:
        return None
    since_update = max(0.0, time.time() - float(progress.get("updated", time.time())))
    return max(0.0, (total - step) / rate - since_update)


def format_eta(seconds: float | None) -> str | None:
    """'10min', '45s', '2h05min'; None when unknown."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{round(seconds)}s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}min"
    return f"{minutes // 60}h{minutes % 60:02d}min"
