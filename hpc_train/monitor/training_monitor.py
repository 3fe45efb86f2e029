"""TrainingMonitor: resource use, latest metrics and plots of a job, read back from its run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hpc_train.errors import JobNotFound, UserError
from hpc_train.jobs import refresh
from hpc_train.monitor.progress_plot import render_progress
from hpc_train.monitor.sweep_plot import render_sweep, sweep_objective, sweep_trials
from hpc_train.monitor.usage import usage_history, usage_of
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.status import JobStatus

log = logging.getLogger(__name__)

METRIC_KEYS = ("epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s")
GROUP_KINDS = ("sweep",)  # kinds whose plot is of their children, not of their own run directory


class TrainingMonitor:
    """Watch jobs of one registry: `track_resource_usage`, `track_metrics`, `plot_training_progress`."""

    def __init__(self, home: str | Path | None = None, *, registry: JobRegistry | None = None) -> None:
        self.registry = registry if registry is not None else JobRegistry(home)

    def job(self, job_id: str) -> JobRecord:
        """The job's record with its status freshly asked of its scheduler (stored status if unreachable)."""
        record = self.registry.get(job_id)
        try:
            refresh(self.registry, [record])
        except JobNotFound:
            raise
        except UserError as exc:  # the scheduler is down: what the job itself wrote is still worth showing
            log.warning("status of %s not refreshed: %s", record.id, exc)
        return record

    # -- resources
    def track_resource_usage(self, job_id: str) -> dict[str, Any]:
        """Latest CPU, memory and GPU use over all ranks; empty values before the first sample.

        {"cpu": 75.0, "memory": "6.0GB/8.0GB", "memory_used_bytes", "memory_total_bytes",
         "gpu": [{"host", "index", "name", "utilization", "memory_used", "memory_total"}],
         "gpu_util": 90.0 | None, "samples", "ranks", "hosts", "time"}; how ranks add up: monitor.usage.
        """
        return self.usage_of(self.job(job_id))

    @staticmethod
    def usage_of(record: JobRecord) -> dict[str, Any]:
        """track_resource_usage for a record already at hand."""
        return usage_of(Path(record.run_dir))

    # -- metrics
    def track_metrics(self, job_id: str) -> dict[str, Any]:
        """The latest metric line plus status and progress; None for what the job has not written."""
        return self.metrics_of(self.job(job_id))

    @staticmethod
    def metrics_of(record: JobRecord) -> dict[str, Any]:
        """track_metrics for a record already at hand."""
        run_dir = RunDirectory(record.run_dir)
        metrics = run_dir.metrics()
        latest = metrics[-1] if metrics else {}
        progress = run_dir.progress() or {}
        snapshot: dict[str, Any] = {key: latest.get(key) for key in METRIC_KEYS}
        if snapshot["epoch"] is None:
            snapshot["epoch"] = progress.get("epoch")
        snapshot.update({
            "epochs": progress.get("epochs"),
            "status": record.status.value,
            "progress": progress.get("fraction", 1.0 if record.status == JobStatus.COMPLETED else 0.0),
        })
        return snapshot

    def metrics_history(self, job_id: str) -> list[dict[str, Any]]:
        """Every metric line written so far."""
        return RunDirectory(self.registry.get(job_id).run_dir).metrics()

    # -- plots
    def plot_training_progress(self, job_id: str, path: str | Path | None = None) -> Path:
        """A PNG of loss, accuracy, throughput and CPU/GPU use; default <run_dir>/progress.png."""
        record = self.job(job_id)
        run_dir = RunDirectory(record.run_dir)
        target = Path(path) if path is not None else run_dir.path / "progress.png"
        progress = run_dir.progress() or {}
        title = f"{record.name} ({record.id}): {record.status.value}"
        if progress.get("epochs"):
            title += f", epoch {progress.get('epoch', 0)}/{progress['epochs']}"
        return render_progress(target, title=title, metrics=run_dir.metrics(),
                               history=usage_history(run_dir.path))

    def plot_sweep(self, search_id: str, path: str | Path | None = None) -> Path:
        """A PNG of a sweep's trials: objective, best so far, parameter importance; default <run_dir>/sweep.png."""
        parent = self.registry.get(search_id)
        children = self.registry.children(parent.id)
        try:
            refresh(self.registry, children)
        except UserError as exc:
            log.warning("status of the trials of %s not refreshed: %s", parent.id, exc)
        metric, direction = sweep_objective(parent)
        trials = sweep_trials(parent, children)
        target = Path(path) if path is not None else Path(parent.run_dir) / "sweep.png"
        values = [t.value for t in trials if t.value is not None]
        title = f"sweep {parent.name} ({parent.id}): {parent.status.value}, {len(values)}/{len(trials)} trials"
        if values:
            best = min(values) if direction == "minimize" else max(values)
            title += f", best {metric} {best:.4g}"
        return render_sweep(target, title=title, trials=trials, metric=metric, direction=direction)

    def plot(self, job_id: str, path: str | Path | None = None) -> Path:
        """plot_sweep for a sweep, plot_training_progress for anything else."""
        if self.registry.get(job_id).kind in GROUP_KINDS:
            return self.plot_sweep(job_id, path)
        return self.plot_training_progress(job_id, path)
