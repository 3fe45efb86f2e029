"""One of the processes that hammer a sweep journal (test_journal.py): claims trials with the sweep
workers' own loop and records every evaluation it makes, so the test can see lost or repeated ones.

Usage: python journal_worker.py SWEEP_DIR WORKER
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from hpc_train.orchestrator.search import open_study, read_settings, worker_seed
from hpc_train.orchestrator.trials import run_trials


def main(sweep_dir: Path, worker: int) -> None:
    settings = read_settings(sweep_dir)
    study = open_study(sweep_dir, settings, seed=worker_seed(settings, worker))
    calls = sweep_dir / f"calls-{worker}.jsonl"

    def objective(trial: optuna.Trial, params: dict[str, Any]) -> float:
        with calls.open("a") as handle:
            handle.write(json.dumps({"number": trial.number, "params": params}) + "\n")
        time.sleep(0.002)
        return float(sum(v for v in params.values() if isinstance(v, (int, float))))

    ran = run_trials(study, objective, space=settings.param_space, sweep_dir=sweep_dir, budget=settings.budget,
                     worker=worker, queued_only=settings.strategy == "grid")
    print(ran)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
