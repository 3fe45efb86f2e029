"""Reading a sweep back from its journal: the trial table, the best trial, progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

from hpc_train.orchestrator.search import SearchSettings, decode
from hpc_train.orchestrator.trials import INTERRUPTED_ATTR, WORKER_ATTR, counts_toward_budget


def trial_rows(study: optuna.Study, settings: SearchSettings) -> list[dict[str, Any]]:
    """One dict per trial: number, state, params (user values), value, cv_mean, cv_std, worker, error."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append({
            "number": trial.number, "state": trial.state.name.lower(),
            "params": decode(settings.param_space, trial.params), "value": trial.value,
            "cv_mean": trial.user_attrs.get("cv_mean"), "cv_std": trial.user_attrs.get("cv_std"),
            "worker": trial.user_attrs.get(WORKER_ATTR), "duration_s": trial.user_attrs.get("duration_s"),
            "interrupted": bool(trial.user_attrs.get(INTERRUPTED_ATTR)), "error": trial.user_attrs.get("error"),
        })
    return rows


def best_row(study: optuna.Study, settings: SearchSettings) -> dict[str, Any] | None:
    """The best completed trial as a row, or None before the first one completes."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    pick = max if settings.direction == "maximize" else min
    best = pick(complete, key=lambda t: (t.value, -t.number) if pick is max else (t.value, t.number))
    return next(row for row in trial_rows(study, settings) if row["number"] == best.number)


def sweep_summary(study: optuna.Study, settings: SearchSettings) -> dict[str, Any]:
    """results.json of a sweep: the best trial and the counts by state."""
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    best = best_row(study, settings)
    return {
        "kind": "sweep", "model": settings.model, "strategy": settings.strategy, "metric": settings.metric,
        "direction": settings.direction, "cv": settings.cv, "budget": settings.budget,
        "finished": sum(t.state.is_finished() and counts_toward_budget(t) for t in trials), "states": states,
        "best_params": best["params"] if best else None, "best_value": best["value"] if best else None,
        "best_trial": best["number"] if best else None, "best_cv_std": best["cv_std"] if best else None,
    }


def progress_numbers(study: optuna.Study, settings: SearchSettings) -> tuple[int, float | None, float | None]:
    """(finished trials, trials per second since the first started, time the first started)."""
    trials = [t for t in study.get_trials(deepcopy=False) if counts_toward_budget(t)]
    finished = sum(t.state.is_finished() for t in trials)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    if not starts or not finished:
        return finished, None, min(starts).timestamp() if starts else None
    first = min(starts).timestamp()
    return finished, finished / max(1e-6, datetime.now().timestamp() - first), first
