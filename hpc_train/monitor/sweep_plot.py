"""The sweep figure: objective per trial with the best so far, parameter importance, objective vs the top parameter.

Trials come from the sweep's registry children (each child's results.json holds the metric and its
`params`); when no child has results yet, from an Optuna journal `<sweep run dir>/journal.log`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_train.monitor.progress_plot import new_figure, note
from hpc_train.registry import JobRecord
from hpc_train.rundir import RunDirectory

log = logging.getLogger(__name__)

FIGSIZE = (15.0, 5.0)
DEFAULT_METRIC = "f1_score"
JOURNAL_NAME = "journal.log"


@dataclass
class Trial:
    """One finished or unfinished trial of a sweep."""

    number: int
    value: float | None
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "completed"


def sweep_objective(parent: JobRecord) -> tuple[str, str]:
    """(metric, direction) of a sweep: the parent's extra fields, else its spec's sweep section."""
    metric, direction = parent.extra.get("metric"), parent.extra.get("direction")
    if not metric or not direction:
        import yaml

        try:
            sweep = (yaml.safe_load(RunDirectory(parent.run_dir).spec_path.read_text()) or {}).get("sweep") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            sweep = {}
        metric = metric or sweep.get("metric") or DEFAULT_METRIC
        direction = direction or sweep.get("direction") or "maximize"
    return str(metric), str(direction)


def trials_from_children(children: Sequence[JobRecord], metric: str) -> list[Trial]:
    """A trial per child job; the value is None until its results.json holds the metric."""
    trials = []
    for index, child in enumerate(children):
        results = RunDirectory(child.run_dir).results() or {}
        value = results.get(metric)
        params = results.get("params") or child.extra.get("params") or {}
        number = child.extra.get("trial", index)
        trials.append(Trial(int(number), float(value) if isinstance(value, (int, float)) else None,
                            dict(params), child.status.value))
    return trials


def trials_from_journal(path: Path, study_name: str | None = None) -> list[Trial]:
    """The trials of an Optuna journal file (the named study, else the newest one); [] when unreadable."""
    try:
        import optuna

        storages = optuna.storages
        journal_module = getattr(storages, "journal", None)  # optuna >= 4; older: JournalFileStorage
        backend_cls = getattr(journal_module, "JournalFileBackend", None) or storages.JournalFileStorage
        storage = storages.JournalStorage(backend_cls(str(path)))
        studies = storage.get_all_studies()
        chosen = [s for s in studies if s.study_name == study_name] or studies[-1:]
        if not chosen:
            return []
        frozen = storage.get_all_trials(chosen[0]._study_id, deepcopy=False)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign journal must not break a plot
        log.warning("could not read the Optuna journal %s: %s", path, exc)
        return []
    return [Trial(t.number, t.value if t.values and len(t.values) == 1 else None, dict(t.params),
                  t.state.name.lower().replace("complete", "completed")) for t in frozen]


def sweep_trials(parent: JobRecord, children: Sequence[JobRecord]) -> list[Trial]:
    """Trials from the children when any has a value, else from the journal, else the children as they are."""
    metric, _ = sweep_objective(parent)
    trials = trials_from_children(children, metric)
    if any(t.value is not None for t in trials):
        return trials
    journal = Path(parent.run_dir) / JOURNAL_NAME
    if journal.is_file():
        return trials_from_journal(journal, parent.extra.get("study_name")) or trials
    return trials


def _distribution(values: list[Any]) -> Any | None:
    """An Optuna distribution covering the values seen, or None for a parameter that never varied."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if len({repr(v) for v in values}) < 2:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return IntDistribution(min(values), max(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted({_choice(v) for v in values}, key=repr))


def _choice(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else repr(value)


def param_importances(trials: Sequence[Trial], direction: str) -> dict[str, float] | None:
    """Optuna's fANOVA importance of each varying parameter; None when it cannot be computed."""
    done = [t for t in trials if t.value is not None]
    names = sorted({name for t in done for name in t.params if all(name in u.params for u in done)})
    if len(done) < 2 or not names:
        return None
    try:
        import optuna

        distributions = {n: d for n in names if (d := _distribution([t.params[n] for t in done])) is not None}
        if not distributions:
            return None
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" chatter on the CLI
        try:
            study = optuna.create_study(direction="minimize" if direction == "minimize" else "maximize")
            categorical = {n for n, d in distributions.items()
                           if isinstance(d, optuna.distributions.CategoricalDistribution)}
            for t in done:
                params = {n: _choice(t.params[n]) if n in categorical else t.params[n] for n in distributions}
                study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                          value=t.value))
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        finally:
            optuna.logging.set_verbosity(verbosity)
    except (ImportError, ValueError, RuntimeError, TypeError) as exc:
        log.info("parameter importance not computed: %s", exc)
        return None


def best_so_far(values: Sequence[float], direction: str) -> list[float]:
    """The running best of a sequence of objective values."""
    pick = min if direction == "minimize" else max
    out: list[float] = []
    for value in values:
        out.append(value if not out else pick(out[-1], value))
    return out


def render_sweep(path: Path, *, title: str, trials: Sequence[Trial], metric: str, direction: str) -> Path:
    """Draw the three sweep panels into a PNG at path; returns path."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(FIGSIZE)
    ax_trials, ax_importance, ax_param = fig.subplots(1, 3)
    done = sorted((t for t in trials if t.value is not None), key=lambda t: t.number)
    values = [float(t.value) for t in done if t.value is not None]
    ax_trials.set_title(f"{metric} per trial")
    ax_trials.set_xlabel("trial")
    ax_trials.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_trials.set_ylabel(metric)
    ax_trials.grid(True, alpha=0.3)
    if done:
        numbers = [t.number for t in done]
        ax_trials.scatter(numbers, values, label="trial", zorder=3)
        ax_trials.step(numbers, best_so_far(values, direction), where="post", color="C3", label="best so far")
        ax_trials.legend(loc="best")
    else:
        note(ax_trials, "no finished trial yet")
    importances = param_importances(trials, direction)
    ax_importance.set_title("parameter importance (fANOVA)")
    if importances:
        names = list(importances)[::-1]
        ax_importance.barh(names, [importances[n] for n in names], color="C2")
        ax_importance.set_xlabel("importance")
    else:
        note(ax_importance, "importance needs 2+ finished trials\nwith varying parameters")
    top = next(iter(importances), None) if importances else _first_param(done)
    _param_panel(ax_param, done, top, metric)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _first_param(trials: Sequence[Trial]) -> str | None:
    names = sorted({name for t in trials for name in t.params})
    return names[0] if names else None


def _param_panel(ax: Any, done: Sequence[Trial], name: str | None, metric: str) -> None:
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    points = [(t.params[name], t.value) for t in done if name is not None and name in t.params]
    if not points:
        ax.set_title("objective by parameter")
        note(ax, "no parameters recorded")
        return
    ax.set_title(f"{metric} by {name}")
    ax.set_xlabel(str(name))
    xs = [p[0] for p in points]
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs):
        ax.scatter(xs, [p[1] for p in points], color="C1")
        return
    labels = sorted({repr(x) for x in xs})
    ax.scatter([labels.index(repr(x)) for x in xs], [p[1] for p in points], color="C1")
    ax.set_xticks(range(len(labels)), labels)
