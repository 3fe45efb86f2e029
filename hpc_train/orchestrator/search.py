"""What a hyperparameter search is: its settings (validated at the door), its search space, its
Optuna sampler, and the journal file the workers share.

A parameter space maps a name to a non-empty list of values (every strategy) or, for random and
bayesian searches, to a range `{"low": 1e-3, "high": 10.0, "log": true}` (ints when low and high are).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hpc_train.errors import SpecError
from hpc_train.metrics import METRIC_DIRECTIONS
from hpc_train.spec.model import METRICS, SKLEARN_MODELS

STRATEGIES = ("grid", "random", "bayesian")
DIRECTIONS = ("maximize", "minimize")
SEARCH_MODELS = (*SKLEARN_MODELS, "neural_network")
# Hyperparameters a neural_network trial understands (the MLP's shape and the training loop's knobs).
TORCH_PARAMS = ("hidden_sizes", "dropout", "learning_rate", "epochs", "batch_size", "optimizer", "momentum",
                "weight_decay")
DEFAULT_RANDOM_TRIALS = 20
STUDY_NAME = "hpc-train-sweep"
RANGE_KEYS = ("low", "high", "log", "step")


@dataclass
class SearchSettings:
    """A validated search: what the workers read back from sweep.json."""

    model: str
    param_space: dict[str, Any]
    strategy: str = "grid"
    metric: str = "f1_score"
    direction: str = "maximize"
    cv: int = 5
    budget: int = 0
    parallel: int = 1
    seed: int = 0
    base_params: dict[str, Any] = field(default_factory=dict)
    generation: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchSettings:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    @property
    def is_torch(self) -> bool:
        return self.model == "neural_network"


def validate_search(*, model: str, param_space: Any, strategy: str, metric: str, direction: str | None, cv: Any,
                    n_trials: Any, parallel: Any, seed: int = 0, base_params: Mapping[str, Any] | None = None,
                    where: str = "hyperparameter_search", keys: Mapping[str, str] | None = None) -> SearchSettings:
    """Check every argument of a search and settle its budget; mistakes are SpecErrors naming the key.

    `keys` renames the arguments in messages (the CLI says `sweep.trials` where the API says `n_trials`).
    """

    def fail(message: str, key: str, value: Any, allowed: Any = None, hint: str | None = None) -> SpecError:
        head, dot, rest = key.partition(".")
        shown = (keys or {}).get(head, head) + dot + rest
        return SpecError(message, file=where, key=shown, value=value, allowed=allowed, hint=hint)

    if model not in SEARCH_MODELS:
        raise fail("unknown model for a search", "model", model, SEARCH_MODELS)
    if strategy not in STRATEGIES:
        raise fail("unknown search strategy", "search_strategy", strategy, STRATEGIES)
    if metric not in METRICS:
        raise fail("unknown metric", "metric", metric, METRICS)
    direction = direction or ("minimize" if METRIC_DIRECTIONS[metric] == "min" else "maximize")
    if direction not in DIRECTIONS:
        raise fail("unknown direction", "direction", direction, DIRECTIONS)
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise fail("cv is the number of cross-validation folds: an integer of at least 2", "cv", cv)
    space = _check_space(param_space, strategy, fail)
    _check_param_names(model, space, dict(base_params or {}), fail)
    for value, key in (n_trials, "n_trials"), (parallel, "parallel"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise fail(f"{key} must be a positive integer", key, value)
    size = grid_size(space) if strategy == "grid" else None
    budget = min(n_trials, size) if size is not None and n_trials is not None else (
        size if size is not None else n_trials or DEFAULT_RANDOM_TRIALS)
    workers = min(parallel or 2, budget)
    return SearchSettings(model=model, param_space=space, strategy=strategy, metric=metric, direction=direction,
                          cv=cv, budget=budget, parallel=workers, seed=seed, base_params=dict(base_params or {}))


def _check_space(param_space: Any, strategy: str, fail: Any) -> dict[str, Any]:
    if not isinstance(param_space, Mapping) or not param_space:
        raise fail("param_space must be a non-empty mapping of parameter name to a list of values",
                   "param_space", param_space, hint="e.g. {'n_estimators': [50, 100], 'max_depth': [10, 20]}")
    space: dict[str, Any] = {}
    for name, values in param_space.items():
        key = f"param_space.{name}"
        if isinstance(values, Mapping):
            if strategy == "grid":
                raise fail("a grid search needs a list of values, not a range", key, dict(values),
                           hint="list the values, or search with the random or bayesian strategy, which take ranges")
            space[name] = _check_range(values, key, fail)
        elif isinstance(values, (list, tuple)):
            if not values:
                raise fail("empty list of values; give at least one", key, list(values))
            space[name] = list(values)
        else:
            raise fail("each parameter needs a list of values (or, for random and bayesian, a range "
                       "{'low': ..., 'high': ...})", key, values)
    return space


def _check_range(values: Mapping[str, Any], key: str, fail: Any) -> dict[str, Any]:
    unknown = sorted(set(values) - set(RANGE_KEYS))
    if unknown or "low" not in values or "high" not in values:
        raise fail("a range needs low and high (and optionally log, step)", key, dict(values), RANGE_KEYS)
    low, high = values["low"], values["high"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high:
        raise fail("a range needs numbers with low < high", key, dict(values))
    if values.get("log") and low <= 0:
        raise fail("a log range needs low > 0", key, dict(values))
    return {"low": low, "high": high, "log": bool(values.get("log", False)), "step": values.get("step")}


def _check_param_names(model: str, space: Mapping[str, Any], base: dict[str, Any], fail: Any) -> None:
    if model == "neural_network":
        for name in [*space, *base]:
            if name not in TORCH_PARAMS:
                raise fail("unknown hyperparameter for neural_network", f"param_space.{name}", name, TORCH_PARAMS)
        return
    from hpc_train.models.sklearn_models import build_sklearn

    fixed = {name: values[0] for name, values in space.items() if isinstance(values, list)}
    checking = "param_space"
    try:
        build_sklearn(model, base, 0)  # the fixed ones alone
        checking = "params"
        build_sklearn(model, {**base, **fixed}, 0)  # names unknown to the estimator
        for name, values in space.items():  # every listed value on its own
            checking = f"param_space.{name}"
            for value in values if isinstance(values, list) else []:
                build_sklearn(model, {**base, name: value}, 0)
    except SpecError as exc:
        name = (exc.key or "").rpartition(".")[2]
        key = f"param_space.{name}" if name in space else f"params.{name}" if name in base else checking
        raise fail(exc.reason, key, exc.value, exc.allowed) from None


def check_folds(cv: int, labels: Sequence[Any], *, where: str = "hyperparameter_search", key: str = "cv") -> None:
    """Stratified k-fold needs at least k samples of every class."""
    from collections import Counter

    counts = Counter(labels)
    smallest = min(counts.values())
    if cv > smallest:
        label = min(counts, key=lambda c: counts[c])
        raise SpecError(f"cv={cv} folds but class {label!r} has only {smallest} samples", file=where, key=key,
                        value=cv, hint=f"use cv <= {smallest}")


def grid_size(space: Mapping[str, Any]) -> int:
    return math.prod(len(values) for values in space.values())


def grid_point(space: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The grid's point number INDEX (0 <= INDEX < grid_size), in itertools.product order (the last
    parameter varies fastest), computed without building the grid."""
    point: dict[str, Any] = {}
    for name in reversed(list(space)):
        index, digit = divmod(index, len(space[name]))
        point[name] = space[name][digit]
    return {name: point[name] for name in space}


def grid_points(space: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every combination of a grid, in order, one at a time."""
    return (grid_point(space, index) for index in range(grid_size(space)))


def grid_queue(settings: SearchSettings) -> list[dict[str, Any]]:
    """The grid points a sweep queues up front, in the order the workers take them.

    Costliest-looking first (larger numbers, and None, which usually means "no limit", before smaller
    ones), so the trials left at the end are short ones and the workers finish together. With a budget
    below the grid size: a seeded random subset of that size, drawn as distinct point numbers, so a
    10^6-point grid with 100 trials costs 100 points, not 10^6.
    """
    size = grid_size(settings.param_space)
    chosen: Sequence[int] = range(size)
    if settings.budget < size:
        chosen = random.Random(settings.seed).sample(range(size), settings.budget)  # distinct, O(budget)
    return sorted((grid_point(settings.param_space, i) for i in chosen), key=_cost_key, reverse=True)


def _cost_key(point: Mapping[str, Any]) -> tuple[float, ...]:
    return tuple(math.inf if v is None else float(v) if isinstance(v, (int, float)) else 0.0 for v in point.values())


def encode(value: Any) -> Any:
    """A choice as Optuna can store it: lists and mappings (hidden_sizes) become JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def suggest(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's parameters, asked of Optuna in the space's order, decoded to the user's values."""
    params: dict[str, Any] = {}
    for name, values in space.items():
        if isinstance(values, list):
            encoded = [encode(v) for v in values]
            params[name] = values[encoded.index(trial.suggest_categorical(name, encoded))]
        elif isinstance(values["low"], int) and isinstance(values["high"], int):
            params[name] = trial.suggest_int(name, values["low"], values["high"], log=values["log"],
                                             step=values.get("step") or 1)
        else:
            params[name] = trial.suggest_float(name, values["low"], values["high"], log=values["log"],
                                               step=values.get("step"))
    return params


def decode(space: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A finished trial's stored params in the user's values (JSON text back to lists)."""
    params: dict[str, Any] = {}
    for name, value in stored.items():
        values = space.get(name)
        if isinstance(values, list):
            encoded = [encode(v) for v in values]
            params[name] = values[encoded.index(value)] if value in encoded else value
        else:
            params[name] = value
    return params


def make_sampler(settings: SearchSettings, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of a strategy, seeded per worker."""
    if settings.strategy == "grid":
        return QueuedGridSampler(seed=seed)
    if settings.strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, settings.budget // 2))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    """Torch trials report a learning curve and may be pruned; scikit-learn trials run to the end."""
    if settings.is_torch:
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


class QueuedGridSampler(optuna.samplers.RandomSampler):
    """The grid strategy's sampler, which never samples: a grid sweep's points are queued up front
    as waiting trials with fixed parameters (create_study), and workers take only queued trials,
    under a lock (trials.run_trials), so racing workers never evaluate a point twice.

    Not Optuna's GridSampler: it builds and shuffles the whole grid in every worker (seconds and
    hundreds of MB for 10^6 points) and repeats points when workers ask at the same time.
    """

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: optuna.distributions.BaseDistribution) -> Any:
        raise RuntimeError(f"grid trial {trial.number} has no queued value for {param_name!r}; "
                           "a grid sweep runs only the points queued when it was created")


def journal_path(sweep_dir: Path) -> Path:
    return sweep_dir / "journal.log"


def open_storage(sweep_dir: Path) -> optuna.storages.JournalStorage:
    """The sweep's Optuna journal: one append-only file, locked with O_EXCL (safe on NFSv3+)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(journal_path(sweep_dir))
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def open_study(sweep_dir: Path, settings: SearchSettings, *, seed: int | None = None) -> optuna.Study:
    """The sweep's study, with this worker's sampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(settings, settings.seed if seed is None else seed)
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(sweep_dir), sampler=sampler,
                             pruner=make_pruner(settings))


def create_study(sweep_dir: Path, settings: SearchSettings) -> optuna.Study:
    """Create the sweep's study in its journal; a grid's points are queued as waiting trials, in order."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = optuna.study.StudyDirection.MAXIMIZE if settings.direction == "maximize" else \
        optuna.study.StudyDirection.MINIMIZE
    study = optuna.create_study(study_name=STUDY_NAME, storage=open_storage(sweep_dir), direction=direction,
                                sampler=make_sampler(settings, settings.seed), pruner=make_pruner(settings))
    if settings.strategy == "grid":
        for point in grid_queue(settings):
            study.enqueue_trial({name: encode(value) for name, value in point.items()})
    return study


# -- the sweep directory: sweep.json (settings), spec.yaml (the base job), journal.log, workers/wK/

SETTINGS_FILE = "sweep.json"


def read_settings(sweep_dir: Path) -> SearchSettings:
    from hpc_train.rundir import read_json

    data = read_json(sweep_dir / SETTINGS_FILE)
    if data is None:
        raise SpecError("not a sweep directory (no readable sweep.json)", file=str(sweep_dir))
    return SearchSettings.from_json(data)


def write_settings(sweep_dir: Path, settings: SearchSettings) -> None:
    from hpc_train.rundir import write_json_atomic

    write_json_atomic(sweep_dir / SETTINGS_FILE, settings.to_json())


def worker_dir(sweep_dir: Path, worker: int) -> Path:
    return sweep_dir / "workers" / f"w{worker}"


def worker_seed(settings: SearchSettings, worker: int) -> int:
    """Each worker (and each resubmission) samples its own sequence: equal seeds would repeat points."""
    return settings.seed + 1000 * settings.generation + worker
