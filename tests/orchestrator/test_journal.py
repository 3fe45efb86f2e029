"""The shared journal under load: 10 processes x 20 trials, none lost and none run twice.

A grid of 200 points and a random search with a budget of 200, each claimed by 10 processes
racing on one Optuna journal file (the sweep workers' own claim loop, a trivial objective).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpc_train.orchestrator.search import create_study, open_study, validate_search, write_settings

WORKERS = 10
HERE = Path(__file__).resolve().parent


def hammer(sweep_dir: Path, strategy: str, param_space: dict, n_trials: int | None) -> tuple[list, list[dict]]:
    """Run WORKERS journal_worker processes on one new sweep; returns (trials, every recorded call)."""
    settings = validate_search(model="random_forest", param_space=param_space, strategy=strategy,
                               metric="accuracy", direction=None, cv=3, n_trials=n_trials, parallel=WORKERS)
    sweep_dir.mkdir()
    write_settings(sweep_dir, settings)
    create_study(sweep_dir, settings)
    procs = [subprocess.Popen([sys.executable, str(HERE / "journal_worker.py"), str(sweep_dir), str(k)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(WORKERS)]
    ran = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        ran.append(int(out.split()[-1]))
    calls = [json.loads(line) for path in sorted(sweep_dir.glob("calls-*.jsonl"))
             for line in path.read_text().splitlines()]
    assert sum(ran) == len(calls)
    return open_study(sweep_dir, settings).get_trials(), calls


@pytest.mark.timeout(300)
def test_grid_of_200_points_by_10_processes_runs_each_point_once(tmp_path: Path) -> None:
    space = {"n_estimators": list(range(1, 21)), "max_depth": list(range(1, 11))}  # 20 x 10 = 200 points
    trials, calls = hammer(tmp_path / "grid", "grid", space, None)
    points = [tuple(sorted(c["params"].items())) for c in calls]
    assert len(points) == 200 and len(set(points)) == 200  # every point evaluated, none twice
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 200
    assert sorted(t.number for t in trials) == list(range(200))
    assert {tuple(sorted(t.params.items())) for t in trials} == set(points)
    assert sorted(c["number"] for c in calls) == list(range(200))  # each trial evaluated by one process
    assert len({t.user_attrs["worker"] for t in trials}) > 1  # really shared between processes


@pytest.mark.timeout(300)
def test_random_budget_of_200_by_10_processes_is_exact(tmp_path: Path) -> None:
    space = {"n_estimators": {"low": 1, "high": 10_000}, "max_depth": {"low": 1, "high": 10_000}}
    trials, calls = hammer(tmp_path / "random", "random", space, 200)
    assert len(trials) == 200 and len(calls) == 200  # no overshoot even with 10 racing workers
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(c["number"] for c in calls) == list(range(200))
    # each worker draws its own sequence (equal seeds would repeat the same points)
    assert len({tuple(sorted(t.params.items())) for t in trials}) > 190
