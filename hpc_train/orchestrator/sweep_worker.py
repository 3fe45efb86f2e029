"""One worker of a sweep: `python -m hpc_train.orchestrator.sweep_worker --sweep-dir D --worker K`.

Every task of the sweep's array (or local process) runs this: it loads the data once, then claims
trials from the shared journal until the sweep's budget is spent. Its own run directory is
D/workers/wK (status.json); the sweep's progress.json and results.json are rewritten after each trial.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import optuna

from hpc_train.data import load_dataset
from hpc_train.errors import UserError
from hpc_train.orchestrator.search import SearchSettings, open_study, read_settings, worker_dir, worker_seed
from hpc_train.orchestrator.sweep_report import progress_numbers, sweep_summary
from hpc_train.orchestrator.trials import close_interrupted, make_objective, run_trials
from hpc_train.rundir import RunDirectory
from hpc_train.spec import JobSpec, load_spec
from hpc_train.status import JobStatus


def sweep_data(spec: JobSpec, base_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All of the spec's data (train and validation parts together): cross-validation makes its own folds."""
    data = load_dataset(spec.data, spec.training.seed, base_dir=base_dir)
    return np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])


def run_worker(sweep_dir: Path, worker: int) -> int:
    """Run trials until the budget is spent; returns how many this worker ran."""
    own = RunDirectory(worker_dir(sweep_dir, worker)).create()
    own.write_status(JobStatus.RUNNING, started=time.time(), error=None, traceback=None,
                     restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0")))
    sweep = RunDirectory(sweep_dir)
    try:
        settings = read_settings(sweep_dir)
        spec = load_spec(sweep.spec_path)
        x, y = sweep_data(spec)
        study = open_study(sweep_dir, settings, seed=worker_seed(settings, worker))
        close_interrupted(study, worker=worker)  # a requeued task's own unfinished trial runs again
        cpus = spec.resources.cpus_per_task
        objective = make_objective(settings, x, y, cpus=cpus, fixed_training=_torch_defaults(spec, settings))

        ran = run_trials(study, objective, space=settings.param_space, sweep_dir=sweep_dir, budget=settings.budget,
                         worker=worker, queued_only=settings.strategy == "grid",
                         on_trial_done=lambda done: _write_progress(sweep, done, settings))
        _write_progress(sweep, study, settings)
    except BaseException as exc:
        _record_failure(own, exc)
        raise
    own.write_status(JobStatus.COMPLETED, finished=time.time(), trials_run=ran)
    return ran


def _torch_defaults(spec: JobSpec, settings: SearchSettings) -> dict[str, object]:
    """The base spec's MLP shape and training knobs, which the searched parameters override."""
    if not settings.is_torch:
        return {}
    return {"hidden_sizes": spec.model.hidden_sizes, "dropout": spec.model.dropout,
            "learning_rate": spec.training.learning_rate, "epochs": spec.training.epochs,
            "batch_size": spec.data.batch_size, "optimizer": spec.training.optimizer,
            "momentum": spec.training.momentum, "weight_decay": spec.training.weight_decay}


def _write_progress(sweep: RunDirectory, study: optuna.Study, settings: SearchSettings) -> None:
    """The sweep's progress.json (trials finished of the budget) and results.json (best so far)."""
    finished, rate, first = progress_numbers(study, settings)
    sweep.write_progress(epoch=finished, epochs=settings.budget, step=finished, total_steps=settings.budget,
                         started=first or time.time(), steps_per_s=rate)
    sweep.write_results(sweep_summary(study, settings))


def _record_failure(own: RunDirectory, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt):
        own.write_status(JobStatus.CANCELLED, error="interrupted")
        return
    tail = "".join(traceback.format_exception(exc)).strip().splitlines()[-12:]
    own.write_status(JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=tail,
                     user_error=isinstance(exc, UserError))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpc_train.orchestrator.sweep_worker", description=__doc__)
    parser.add_argument("--sweep-dir", required=True, type=Path, help="the sweep's run directory")
    parser.add_argument("--worker", required=True, type=int, help="this worker's slot, 0..parallel-1")
    args = parser.parse_args(argv)
    try:
        ran = run_worker(args.sweep_dir.absolute(), args.worker)
    except UserError as exc:
        print(f"hpc-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"worker {args.worker}: ran {ran} trials")
    return 0


def submitit_entry(sweep_dir: str, worker: int) -> int:
    """What each submitit task (SLURM array task or local process) runs."""
    code = main(["--sweep-dir", sweep_dir, "--worker", str(worker)])
    if code != 0:
        raise SystemExit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
