"""The shared journal under load: 10 processes x 20 trials, none lost and none run twice.

A grid of 200 points and a random search with a budget of 200, each claimed by 10 processes
racing on one Optuna journal file (the sweep workers' own claim loop, a trivial objective); and a
10^6-point grid with a budget of 100, planned without building the grid.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpc_train.orchestrator.search import (
    create_study,
    grid_point,
    grid_points,
    grid_size,
    open_study,
    suggest,
    validate_search,
    write_settings,
)

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


# 10^6 points: six random-forest parameters of ten values each
MILLION = {"n_estimators": list(range(1, 11)), "max_depth": list(range(1, 11)),
           "min_samples_split": list(range(2, 12)), "min_samples_leaf": list(range(1, 11)),
           "max_leaf_nodes": list(range(2, 12)), "random_state": list(range(10))}


def test_grid_point_numbers_follow_itertools_product() -> None:
    import itertools

    space = {"a": [1, 2, 3], "b": ["x", None], "c": [[8, 8], [16]], "d": [0.5]}
    expected = [dict(zip(space, combo)) for combo in itertools.product(*space.values())]
    assert list(grid_points(space)) == expected
    assert [grid_point(space, i) for i in range(grid_size(space))] == expected
    assert grid_point(MILLION, 999_999) == {name: values[-1] for name, values in MILLION.items()}
    assert grid_point(MILLION, 123_456) == {"n_estimators": 2, "max_depth": 3, "min_samples_split": 5,
                                            "min_samples_leaf": 5, "max_leaf_nodes": 7, "random_state": 6}


def test_a_million_point_grid_with_100_trials_plans_quickly_in_flat_memory(tmp_path: Path) -> None:
    assert grid_size(MILLION) == 10**6
    validate_search(model="random_forest", param_space={"max_depth": [2]}, strategy="grid", metric="accuracy",
                    direction=None, cv=3, n_trials=None, parallel=None)  # scikit-learn's import is not the grid's
    tracemalloc.start()
    try:
        started = time.perf_counter()
        settings = validate_search(model="random_forest", param_space=MILLION, strategy="grid",
                                   metric="accuracy", direction=None, cv=3, n_trials=100, parallel=4)
        write_settings(tmp_path, settings)
        create_study(tmp_path, settings)
        planned = time.perf_counter() - started
        plan_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        study = open_study(tmp_path, settings, seed=3)  # what every worker does first
        worker_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the whole grid as dicts would take several hundred MB and tens of seconds
    assert settings.budget == 100 and planned < 2.0, planned
    assert plan_peak < 10 * 2**20 and worker_peak < 10 * 2**20, (plan_peak, worker_peak)
    queued = study.get_trials()
    assert len(queued) == 100 and all(t.state == TrialState.WAITING for t in queued)
    points = {tuple(sorted(t.system_attrs["fixed_params"].items())) for t in queued}
    assert len(points) == 100  # distinct points


def test_a_grid_worker_never_samples_a_point_of_its_own(tmp_path: Path) -> None:
    settings = validate_search(model="random_forest", param_space={"max_depth": [2, 3]}, strategy="grid",
                               metric="accuracy", direction=None, cv=3, n_trials=None, parallel=None)
    study = create_study(tmp_path, settings)
    for _ in range(2):
        assert suggest(study.ask(), settings.param_space)["max_depth"] in (2, 3)  # the queued points
    with pytest.raises(RuntimeError, match="runs only the points queued"):
        suggest(study.ask(), settings.param_space)


@pytest.mark.timeout(300)
def test_a_million_point_grid_by_10_processes_runs_100_distinct_points_once(tmp_path: Path) -> None:
    trials, calls = hammer(tmp_path / "big", "grid", MILLION, 100)
    points = [tuple(sorted(c["params"].items())) for c in calls]
    assert len(points) == 100 and len(set(points)) == 100
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 100
    assert sorted(c["number"] for c in calls) == list(range(100))
