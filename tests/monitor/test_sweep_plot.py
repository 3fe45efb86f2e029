"""Sweep plots: a registry sweep parent with trial children (results.json: metric and params), an Optuna
journal file, and pieces of the figure (best so far, parameter importance)."""

from __future__ import annotations

from pathlib import Path

import pytest
from png_checks import assert_png

from hpc_train.cli.main import main
from hpc_train.monitor import TrainingMonitor
from hpc_train.monitor.sweep_plot import Trial, best_so_far, param_importances, sweep_trials
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.status import JobStatus

GRID = [(50, 10), (50, 20), (100, 10), (100, 20), (200, 10), (200, 20)]


def f1_of(n_estimators: int, max_depth: int) -> float:
    """A made-up objective where max_depth matters far more than n_estimators."""
    return round(0.70 + 0.01 * max_depth + 0.0001 * n_estimators, 4)


def add_sweep(home: Path, root: Path, *, with_results: bool = True, metric: str = "f1_score") -> JobRegistry:
    registry = JobRegistry(home)
    parent_dir = RunDirectory(root / "sweep").create()
    registry.add(JobRecord(id="sweep001", name="rf-search", kind="sweep", executor="slurm", scheduler_id="41",
                           run_dir=str(parent_dir.path), status=JobStatus.COMPLETED,
                           extra={"metric": metric, "direction": "maximize"}))
    for n, (trees, depth) in enumerate(GRID):
        child = RunDirectory(root / f"trial{n}").create()
        if with_results:
            child.write_results({metric: f1_of(trees, depth), "accuracy": 0.9,
                                 "params": {"n_estimators": trees, "max_depth": depth, "criterion": "gini"}})
        registry.add(JobRecord(id=f"sweep001-{n}", name="rf-search", kind="job", executor="slurm",
                               scheduler_id=f"41_{n}", run_dir=str(child.path), status=JobStatus.COMPLETED,
                               parent="sweep001", created=1000.0 + n))
    return registry


def test_fake_sweep_plot(tmp_path: Path) -> None:
    registry = add_sweep(tmp_path / "home", tmp_path)
    monitor = TrainingMonitor(registry=registry)
    path = monitor.plot_sweep("sweep001")
    assert path == tmp_path / "sweep" / "sweep.png"
    assert_png(path, 1500, 500)
    trials = sweep_trials(registry.get("sweep001"), registry.children("sweep001"))
    assert [t.value for t in trials] == [f1_of(*p) for p in GRID]


def test_plot_verb_dispatches_on_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_sweep(tmp_path / "home", tmp_path)
    target = tmp_path / "search.png"
    assert main(["--home", str(tmp_path / "home"), "plot", "sweep001", "-o", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert_png(target, 1500, 500)


def test_sweep_without_results_yet_still_plots(tmp_path: Path) -> None:
    registry = add_sweep(tmp_path / "home", tmp_path, with_results=False)
    assert_png(TrainingMonitor(registry=registry).plot_sweep("sweep001", tmp_path / "empty.png"), 1500, 500)


def test_optuna_journal_is_read_when_children_have_no_results(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    registry = add_sweep(tmp_path / "home", tmp_path, with_results=False)
    journal = tmp_path / "sweep" / "journal.log"
    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="rf-search", direction="maximize",
                                storage=optuna.storages.JournalStorage(backend),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: f1_of(t.suggest_int("n_estimators", 50, 200), t.suggest_int("max_depth", 5, 30)),
                   n_trials=8)
    optuna.logging.set_verbosity(verbosity)
    trials = sweep_trials(registry.get("sweep001"), registry.children("sweep001"))
    assert len(trials) == 8 and all(t.value is not None and set(t.params) == {"n_estimators", "max_depth"}
                                    for t in trials)
    assert_png(TrainingMonitor(registry=registry).plot_sweep("sweep001"), 1500, 500)


def test_parameter_importance_finds_the_parameter_that_matters() -> None:
    trials = [Trial(n, f1_of(t, d), {"n_estimators": t, "max_depth": d, "criterion": "gini"})
              for n, (t, d) in enumerate(GRID)]
    importances = param_importances(trials, "maximize")
    assert importances is not None and set(importances) == {"n_estimators", "max_depth"}  # constant: left out
    assert max(importances, key=importances.__getitem__) == "max_depth"
    assert param_importances(trials[:1], "maximize") is None


def test_best_so_far() -> None:
    assert best_so_far([0.5, 0.7, 0.6, 0.8], "maximize") == [0.5, 0.7, 0.7, 0.8]
    assert best_so_far([0.5, 0.7, 0.4], "minimize") == [0.5, 0.5, 0.4]
