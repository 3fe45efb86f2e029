"""What the orchestrator hands back: a Job, a SearchJob (a sweep), a Pipeline. Each is an id plus
methods that ask the orchestrator, so a handle rebuilt from an id later behaves the same."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpc_train.errors import UserError

if TYPE_CHECKING:
    import optuna

    from hpc_train.orchestrator.orchestrator import TrainingOrchestrator
    from hpc_train.orchestrator.pipeline import Stage
    from hpc_train.orchestrator.search import SearchSettings


@dataclass
class Job:
    """A submitted job (or batch, sweep, pipeline) by id."""

    id: str
    name: str
    run_dir: Path
    orchestrator: TrainingOrchestrator = field(repr=False, compare=False)

    def status(self) -> dict[str, Any]:
        """{"status", "progress", "eta", ...}: see TrainingOrchestrator.get_job_status."""
        return self.orchestrator.get_job_status(self.id)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until it ends (or timeout); returns the final status."""
        return self.orchestrator.wait_for_completion(self.id, timeout=timeout)

    def results(self) -> dict[str, Any]:
        return self.orchestrator.get_results(self.id)

    def cancel(self) -> None:
        self.orchestrator.cancel(self.id)


@dataclass
class SearchJob(Job):
    """A hyperparameter search: its trials live in `<run_dir>/journal.log`."""

    @property
    def settings(self) -> SearchSettings:
        from hpc_train.orchestrator.search import read_settings

        return read_settings(self.run_dir)

    def study(self) -> optuna.Study:
        """The Optuna study (read-only use: the workers own it)."""
        from hpc_train.orchestrator.search import open_study

        return open_study(self.run_dir, self.settings)

    @property
    def trials(self) -> list[dict[str, Any]]:
        """Every trial: number, state, params, value, cv_mean, cv_std, worker, duration_s, error."""
        from hpc_train.orchestrator.sweep_report import trial_rows

        return trial_rows(self.study(), self.settings)

    @property
    def best_trial(self) -> dict[str, Any]:
        """The best completed trial so far; a UserError before any trial completes."""
        from hpc_train.orchestrator.sweep_report import best_row

        best = best_row(self.study(), self.settings)
        if best is None:
            state = self.orchestrator.get_job_status(self.id)
            raise UserError(f"sweep {self.id} has no completed trial yet (it is {state['status']}, "
                            f"{state['trials']['finished']}/{state['trials']['budget']} trials finished); "
                            "wait with search.wait()")
        return best

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best_trial["params"])

    @property
    def best_value(self) -> float:
        return float(self.best_trial["value"])

    def resubmit(self) -> SearchJob:
        """Start the workers again on the same journal (after a cancel or a failure)."""
        return self.orchestrator.resubmit_sweep(self.id)


@dataclass
class Pipeline:
    """Stages to run in order; `run()` submits them. Before that it has no id."""

    name: str
    stages: Sequence[Stage]
    workdir: Path
    orchestrator: TrainingOrchestrator = field(repr=False, compare=False)
    id: str | None = None
    run_dir: Path | None = None

    def run(self) -> Pipeline:
        """Submit every stage (SLURM: an afterok chain; local: one process, in order). Returns self."""
        if self.id is not None:
            raise UserError(f"pipeline {self.name} was already submitted as {self.id}")
        record = self.orchestrator.run_pipeline(self)
        self.id, self.run_dir = record.id, Path(record.run_dir)
        return self

    def _require_id(self) -> str:
        if self.id is None:
            raise UserError(f"pipeline {self.name} has not been run yet; call pipe.run()")
        return self.id

    def status(self) -> dict[str, Any]:
        """The pipeline's status with `stages`: each stage's status, and why skipped ones did not run."""
        if self.id is None:
            return {"id": None, "name": self.name, "kind": "pipeline", "status": "not submitted", "progress": 0.0,
                    "eta": None, "stages": [{"stage": s.stage, "script": s.script, "status": "not submitted"}
                                            for s in self.stages]}
        return self.orchestrator.get_job_status(self.id)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        return self.orchestrator.wait_for_completion(self._require_id(), timeout=timeout)

    def cancel(self) -> None:
        self.orchestrator.cancel(self._require_id())
