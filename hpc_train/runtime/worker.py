"""The entry point every rank runs inside a job: `python -m hpc_train.runtime.worker --spec S --run-dir D`.

It loads the resolved spec, detects the cluster environment, trains, and writes the run directory.
A user mistake exits 2 with one message; any other failure records the traceback's last lines in
status.json (so `hpc-train status` can show it) and exits 1. Preempted and not requeued (outside SLURM,
or at preemption.max_requeues), rank 0 exits 3 after the checkpoint, like `hpc-train run`.
"""

from __future__ import annotations

from hpc_train.runtime.preemption import process_guard

if __name__ == "__main__":
    # A rank started as `python -m hpc_train.runtime.worker` (sbatch, srun, mpirun) takes over the
    # preemption signals before the imports below: they take ~0.25 s, during which a SIGUSR1 would
    # otherwise kill it. main() installs the same guard again (a no-op then).
    process_guard().install()

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hpc_train import __version__
from hpc_train.data import load_dataset
from hpc_train.errors import UserError
from hpc_train.rundir import RunDirectory
from hpc_train.runtime.resources import ResourceSampler
from hpc_train.spec import JobSpec, dump_spec, load_spec, spec_hash
from hpc_train.status import JobStatus

TRACEBACK_LINES = 12
# Preempted and not requeued: not done, so not success for SLURM (afterok dependents wait); as `hpc-train run`.
PREEMPTED_EXIT_CODE = 3


def run_spec(spec: JobSpec, run_dir: RunDirectory, *, base_dir: Path | None = None) -> dict[str, Any]:
    """Train `spec` in this process (one rank of a job, or the whole job) and write its results."""
    from hpc_train.runtime.environments import detect_environment

    # A preemption signal that arrives while data loads must not kill the job: the guard is
    # installed before anything slow (the worker's main installs it even earlier).
    guard = process_guard()
    installed_here = not guard.installed
    guard.install()
    try:
        env = detect_environment()
        # resources.rank<R>.jsonl while training: at start, per interval, at rank 0's epoch ends, at stop
        with ResourceSampler(run_dir.path, env.global_rank) as sampler:
            return _run_spec(spec, run_dir, base_dir, env, guard, sampler)
    finally:
        guard.reset()
        if installed_here:
            guard.uninstall()


def _run_spec(spec: JobSpec, run_dir: RunDirectory, base_dir: Path | None, env: Any, guard: Any,
              sampler: ResourceSampler) -> dict[str, Any]:
    is_main = env.global_rank == 0
    started = time.time()
    if is_main:
        run_dir.create()
        if not run_dir.spec_path.exists():
            run_dir.spec_path.write_text(dump_spec(spec))
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        fault = {}
        if restarts > 0:  # SLURM started the job again: say why the run before ended
            from hpc_train.runtime.faults import previous_run_fault

            fault = {"last_fault": previous_run_fault(run_dir.status_record(), os.environ.get("SLURM_JOB_ID"))}
        run_dir.write_status(JobStatus.RUNNING, restarts=restarts, started=started, world_size=env.world_size,
                             **fault)
    try:
        data = load_dataset(spec.data, spec.training.seed, base_dir=base_dir)
        if spec.model.is_torch:
            from hpc_train.runtime.torch_runner import train_torch

            results = train_torch(spec, data, run_dir, env, guard, on_epoch=sampler.sample_if_due)
        else:
            from hpc_train.runtime.sklearn_runner import train_sklearn

            results = train_sklearn(spec, data, run_dir)
    except BaseException as exc:
        if is_main:
            _record_failure(run_dir, exc)
        raise
    if results.get("preempted"):
        return results
    results.update({
        "name": spec.name, "model": spec.model.type, "data": spec.data.train_path,
        "n_train": len(data.y_train), "n_val": len(data.y_val), "n_features": data.n_features,
        "n_classes": data.n_classes, "duration_s": round(time.time() - started, 3),
        "world_size": env.world_size, "spec_hash": spec_hash(spec), "hpc_train_version": __version__,
    })
    if is_main:
        run_dir.write_results(results)
        run_dir.write_status(JobStatus.COMPLETED, finished=time.time())
    return results


def _record_failure(run_dir: RunDirectory, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt):
        run_dir.write_status(JobStatus.CANCELLED, error="interrupted")
        return
    lines = traceback.format_exception(exc)
    tail = "".join(lines).strip().splitlines()[-TRACEBACK_LINES:]
    run_dir.write_status(JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=tail,
                         user_error=isinstance(exc, UserError))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpc_train.runtime.worker", description=__doc__)
    parser.add_argument("--spec", required=True, help="the resolved spec.yaml")
    parser.add_argument("--run-dir", required=True, help="the job's run directory")
    args = parser.parse_args(argv)
    guard = process_guard().install()
    try:
        spec = load_spec(args.spec)
        results = run_spec(spec, RunDirectory(args.run_dir), base_dir=Path(args.spec).resolve().parent)
    except UserError as exc:
        print(f"hpc-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        guard.ignore()  # a time-limit warning after the last step must not turn a finished rank into a failed one
    # Only rank 0 knows whether the job was requeued (the others return at once, and a non-zero exit of
    # theirs would make srun kill rank 0 before its `scontrol requeue`).
    return PREEMPTED_EXIT_CODE if results.get("requeued") is False else 0



def submitit_entry(spec_path: str, run_dir: str) -> int:
    """What submitit runs in each task: the worker; a non-zero exit becomes a failed job."""
    code = main(["--spec", spec_path, "--run-dir", run_dir])
    if code != 0:
        raise SystemExit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
