"""Searches on the local executor: TPE against random search, cancel and resubmit, torch trials that prune."""

from __future__ import annotations

import statistics
import time

import numpy as np
import optuna
import pytest

from hpc_train.errors import UserError
from hpc_train.orchestrator import SearchJob, TrainingOrchestrator
from hpc_train.orchestrator.search import validate_search
from hpc_train.orchestrator.trials import make_objective

# SVM on wine: accuracy has one clear plateau for gamma in ~[3e-3, 0.1] and falls to chance either side.
GAMMA = {"gamma": {"low": 1e-4, "high": 1e2, "log": True}}


@pytest.mark.timeout(180)
def test_bayesian_search_beats_the_median_random_trial(orch: TrainingOrchestrator) -> None:
    common = {"model": "svm", "param_space": GAMMA, "metric": "f1_score", "cv": 3, "n_trials": 20, "parallel": 1,
              "data": "sklearn:wine", "seed": 0}
    bayesian = orch.hyperparameter_search(search_strategy="bayesian", name="tpe", **common)
    random = orch.hyperparameter_search(search_strategy="random", name="rand", **common)
    assert bayesian.wait()["status"] == random.wait()["status"] == "completed"
    random_values = [t["value"] for t in random.trials]
    bayes_values = [t["value"] for t in bayesian.trials]
    assert len(random_values) == len(bayes_values) == 20
    assert bayesian.best_value > statistics.median(random_values) + 0.05
    assert statistics.median(bayes_values[10:]) > statistics.median(random_values)  # TPE's half after start-up
    assert 1e-3 < bayesian.best_params["gamma"] < 1.0


@pytest.mark.timeout(240)
def test_cancelled_and_resubmitted_sweep_repeats_no_finished_trial(orch: TrainingOrchestrator) -> None:
    space = {"n_estimators": [60, 80], "max_depth": [6, 8, 10, None]}  # 8 points of ~1 s each
    search = orch.hyperparameter_search("random_forest", space, cv=3, parallel=2, params={"n_jobs": 1})
    deadline = time.monotonic() + 120
    while search.status()["trials"]["finished"] < 2:
        assert time.monotonic() < deadline, search.status()
        time.sleep(0.2)
    search.cancel()
    assert search.status()["status"] == "cancelled"
    before = {t["number"]: t["params"] for t in search.trials if t["state"] == "complete"}
    assert 2 <= len(before) < 8

    again = search.resubmit()
    with pytest.raises(UserError, match="cancel it first"):
        orch.resubmit_sweep(search.id)  # its workers are running again
    assert again.wait()["status"] == "completed"
    trials = again.trials
    complete = [t for t in trials if t["state"] == "complete"]
    points = [tuple(sorted(t["params"].items(), key=str)) for t in complete]
    assert len(points) == 8 and len(set(points)) == 8  # the whole grid, each point once
    assert {t["number"]: t["params"] for t in complete if t["number"] in before} == before  # kept, not rerun
    assert all(t["state"] == "fail" for t in trials if t["interrupted"])  # cut short by the cancel, rerun
    failed = len(trials) - 8  # 0 when the cancel fell between two trials
    assert orch.get_job_status(search.id)["trials"] == {"finished": 8, "budget": 8,
                                                        "states": {"complete": 8, **({"fail": failed} if failed else {})}}


@pytest.mark.timeout(120)
def test_torch_trials_report_learning_curves_and_get_pruned() -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x[:400] / 16.0).astype(np.float32), y[:400].astype(np.int64)
    settings = validate_search(model="neural_network", param_space={"learning_rate": [0.01, 1e-7]},
                               strategy="grid", metric="accuracy", direction=None, cv=2, n_trials=None, parallel=1,
                               base_params={"hidden_sizes": [32], "epochs": 4, "batch_size": 32})
    objective = make_objective(settings, x, y)
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    for learning_rate in [0.01, 0.012, 0.014, 1e-7]:
        trial = study.ask()
        try:
            study.tell(trial, objective(trial, {"learning_rate": learning_rate}))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    good, hopeless = study.trials[:3], study.trials[3]
    assert all(t.state.name == "COMPLETE" and sorted(t.intermediate_values) == [0, 1, 2, 3] for t in good)
    assert all(t.user_attrs["cv_mean"] > 0.8 for t in good)
    assert hopeless.state.name == "PRUNED" and max(hopeless.intermediate_values) <= 1


@pytest.mark.timeout(180)
def test_neural_network_search_runs_through_workers(orch: TrainingOrchestrator) -> None:
    search = orch.hyperparameter_search("neural_network", {"learning_rate": {"low": 1e-3, "high": 3e-2, "log": True}},
                                        search_strategy="random", metric="accuracy", cv=2, n_trials=3, parallel=1,
                                        data="sklearn:iris", params={"hidden_sizes": [16], "epochs": 5})
    assert isinstance(search, SearchJob) and search.wait()["status"] == "completed", search.status()
    study = search.study()
    assert len(study.trials) == 3 and all(len(t.intermediate_values) == 5 for t in study.trials)
    assert search.best_value > 0.5


def test_best_of_a_sweep_without_a_completed_trial_is_a_clear_error(orch: TrainingOrchestrator) -> None:
    search = orch.hyperparameter_search("svm", {"C": [1.0]}, cv=2, data="sklearn:iris", parallel=1)
    search.cancel()  # at once: the worker is still starting (importing scikit-learn and Optuna)
    with pytest.raises(UserError, match="no completed trial yet .*cancelled"):
        search.best_params  # noqa: B018
