"""Inside a sweep worker: claim trials from the shared journal until the budget is spent, and score
each one by stratified k-fold cross-validation.

Claiming (count the budget, then `study.ask()`) happens under one file lock next to the journal, so
racing workers never take the same grid point and never start more trials than the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages.journal import JournalFileOpenLock
from optuna.trial import TrialState

from hpc_train.orchestrator.search import SearchSettings, suggest

log = logging.getLogger(__name__)

# Trial user attributes: the worker that ran it, and a mark on trials cut short by a cancel or preemption.
WORKER_ATTR = "worker"
INTERRUPTED_ATTR = "interrupted"
# metric -> scikit-learn scorer arguments, with the same meaning as hpc_train.metrics (macro averages).
SCORERS: dict[str, tuple[str, dict[str, Any]]] = {
    "accuracy": ("accuracy_score", {}),
    "f1_score": ("f1_score", {"average": "macro", "zero_division": 0}),
    "precision": ("precision_score", {"average": "macro", "zero_division": 0}),
    "recall": ("recall_score", {"average": "macro", "zero_division": 0}),
    "loss": ("log_loss", {}),
}

# A trial function gets the trial (to report intermediate values) and its parameters, already suggested.
Objective = Callable[[optuna.Trial, dict[str, Any]], float]


@contextmanager
def claim_lock(sweep_dir: Path) -> Iterator[None]:
    """The sweep's claim lock: an O_EXCL lock file (NFS-safe), forcibly freed after 30 s unused."""
    lock = JournalFileOpenLock(str(sweep_dir / "claim"))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """Started trials count, except those cut short by a cancel (they run again)."""
    return trial.state != TrialState.WAITING and not trial.user_attrs.get(INTERRUPTED_ATTR)


def run_trials(study: optuna.Study, objective: Objective, *, space: Mapping[str, Any], sweep_dir: Path,
               budget: int, worker: int, queued_only: bool = False,
               on_trial_done: Callable[[optuna.Study], None] | None = None) -> int:
    """Claim and run trials until `budget` trials have been started by all workers; returns how many ran here.

    queued_only (grids): take only trials queued up front, never let the sampler make a new one.
    The parameters are suggested while the lock is held, so a claimed trial always records its point.
    """
    ran = 0
    while True:
        with claim_lock(sweep_dir):
            trials = study.get_trials(deepcopy=False)
            started = sum(counts_toward_budget(t) for t in trials)
            if started >= budget or queued_only and not any(t.state == TrialState.WAITING for t in trials):
                return ran
            trial = study.ask()  # takes the oldest waiting trial first
            trial.set_user_attr(WORKER_ATTR, worker)
            params = suggest(trial, space)
        _run_one(study, trial, params, objective)
        ran += 1
        if on_trial_done is not None:
            on_trial_done(study)


def _run_one(study: optuna.Study, trial: optuna.Trial, params: dict[str, Any], objective: Objective) -> None:
    started = time.time()
    try:
        value = objective(trial, params)
    except optuna.TrialPruned:
        _tell(study, trial, state=TrialState.PRUNED)
    except Exception as exc:  # noqa: BLE001 - one bad point must not end the sweep; the trial records why
        log.warning("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
        _tell(study, trial, state=TrialState.FAIL)
    else:
        trial.set_user_attr("duration_s", round(time.time() - started, 3))
        _tell(study, trial, values=value)


def _tell(study: optuna.Study, trial: optuna.Trial, **kwargs: Any) -> None:
    try:
        study.tell(trial, **kwargs)
    except optuna.exceptions.UpdateFinishedTrialError:
        # marked interrupted by a resubmission while this (old) worker still ran: its result is dropped
        log.warning("trial %d was already closed by a resubmission", trial.number)


def close_interrupted(study: optuna.Study, *, worker: int | None = None) -> list[int]:
    """Mark RUNNING trials (of one worker slot, or all) as interrupted FAILs; grid points are queued again.

    Called by a worker when it starts (a requeued task finds its own unfinished trial) and by a
    resubmission once the old workers are gone.
    """
    closed = []
    storage = study._storage  # the public Study API cannot close another process's trial
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if worker is not None and trial.user_attrs.get(WORKER_ATTR) != worker:
            continue
        trial_id = trial._trial_id
        storage.set_trial_user_attr(trial_id, INTERRUPTED_ATTR, True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        closed.append(trial.number)
    return closed


# -- objectives


def make_objective(settings: SearchSettings, x: np.ndarray, y: np.ndarray, *, cpus: int = 1,
                   fixed_training: Mapping[str, Any] | None = None) -> Objective:
    """The trial function: cross-validate one point, record mean and std as user attrs; returns the mean."""
    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(settings.cv, shuffle=True, random_state=settings.seed).split(x, y))
    n_classes = int(y.max()) + 1

    def objective(trial: optuna.Trial, params: dict[str, Any]) -> float:
        if settings.is_torch:
            scores = _torch_scores(trial, {**(fixed_training or {}), **settings.base_params, **params}, x, y,
                                   folds, settings, n_classes, cpus)
        else:
            scores = _sklearn_scores({**settings.base_params, **params}, x, y, folds, settings, n_classes, cpus)
        trial.set_user_attr("cv_mean", float(np.mean(scores)))
        trial.set_user_attr("cv_std", float(np.std(scores)))
        trial.set_user_attr("cv_scores", [float(s) for s in scores])
        return float(np.mean(scores))

    return objective


def fold_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None,
               n_classes: int) -> float:
    """One fold's metric, as hpc_train.metrics defines it (log loss needs probabilities)."""
    import sklearn.metrics

    name, kwargs = SCORERS[metric]
    if metric == "loss":
        if proba is None:
            raise ValueError("the loss metric needs a model with predict_proba")
        return float(sklearn.metrics.log_loss(y_true, proba, labels=list(range(n_classes))))
    return float(getattr(sklearn.metrics, name)(y_true, y_pred, **kwargs))


def _sklearn_scores(params: dict[str, Any], x: np.ndarray, y: np.ndarray, folds: list[Any],
                    settings: SearchSettings, n_classes: int, cpus: int) -> list[float]:
    from sklearn.base import clone

    from hpc_train.models.sklearn_models import build_sklearn

    estimator = build_sklearn(settings.model, params, settings.seed)
    defaults = estimator.get_params()
    if "n_jobs" in defaults and "n_jobs" not in params:
        estimator.set_params(n_jobs=cpus)  # the worker's allocation, not every core of the node
    if defaults.get("probability") and "probability" not in params and settings.metric != "loss":
        estimator.set_params(probability=False)  # SVC's calibration: 5 inner fits that no metric but loss needs
    scores = []
    for train, test in folds:
        fitted = clone(estimator).fit(x[train], y[train])
        proba = fitted.predict_proba(x[test]) if settings.metric == "loss" else None
        scores.append(fold_score(settings.metric, y[test], fitted.predict(x[test]), proba, n_classes))
    return scores


def _torch_scores(trial: optuna.Trial, params: dict[str, Any], x: np.ndarray, y: np.ndarray, folds: list[Any],
                  settings: SearchSettings, n_classes: int, cpus: int) -> list[float]:
    """Train the MLP on each fold; the first fold's per-epoch scores are the learning curve a pruner sees."""
    import torch

    from hpc_train.models.mlp import MLP

    torch.set_num_threads(cpus)
    hidden = params.get("hidden_sizes", [128, 64])
    epochs, batch = int(params.get("epochs", 10)), int(params.get("batch_size", 32))
    scores = []
    for fold, (train, test) in enumerate(folds):
        torch.manual_seed(settings.seed + fold)
        model = MLP(x.shape[1], hidden, n_classes, float(params.get("dropout", 0.0)))
        optimizer = _optimizer(model, params)
        xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
        score = float("nan")
        for epoch in range(epochs):
            model.train()
            for index in torch.randperm(len(yt)).split(batch):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[index]), yt[index]).backward()
                optimizer.step()
            if fold == 0 or epoch == epochs - 1:
                score = _torch_fold_score(model, x[test], y[test], settings.metric, n_classes)
            if fold == 0:
                trial.report(score, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch} of fold 0")
        scores.append(score)
    return scores


def _optimizer(model: Any, params: Mapping[str, Any]) -> Any:
    import torch

    lr, decay = float(params.get("learning_rate", 1e-3)), float(params.get("weight_decay", 0.0))
    if params.get("optimizer", "adam") == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=float(params.get("momentum", 0.9)),
                               weight_decay=decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)


def _torch_fold_score(model: Any, x: np.ndarray, y: np.ndarray, metric: str, n_classes: int) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        proba = torch.softmax(model(torch.from_numpy(x)).float(), dim=1).numpy().astype(np.float64)
    proba /= proba.sum(axis=1, keepdims=True)
    return fold_score(metric, y, proba.argmax(axis=1), proba, n_classes)
