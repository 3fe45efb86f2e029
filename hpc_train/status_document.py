"""The status document of a job, batch, sweep or pipeline: status, progress, ETA, and what each part is doing.

One implementation for `hpc-train status --json` and `TrainingOrchestrator.get_job_status`. Everything
is read from the registry and the run directories, so a new orchestrator (or the CLI in another shell)
sees exactly what the one that submitted the work sees.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpc_train.jobs import refresh
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory, read_json
from hpc_train.status import JobStatus


def format_eta(seconds: float | None) -> str | None:
    """'10min', '45s', '2h05min'; None when unknown."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{round(seconds)}s"
    minutes = round(seconds / 60)
    return f"{minutes}min" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}min"


def _eta_seconds(progress: dict[str, Any], status: JobStatus) -> float | None:
    if status.is_terminal:
        return 0.0
    rate, total, step = progress.get("steps_per_s"), progress.get("total_steps"), progress.get("step")
    if not rate or total is None or step is None:
        return None
    since_update = max(0.0, time.time() - float(progress.get("updated", time.time())))
    return max(0.0, (total - step) / rate - since_update)


def job_status(record: JobRecord) -> dict[str, Any]:
    """One job: {"id", "name", "kind", "status", "progress", "eta", "error", ...}."""
    rd = RunDirectory(record.run_dir)
    progress = rd.progress() or {}
    own = rd.status_record() or {}
    done = record.status == JobStatus.COMPLETED
    fraction = 1.0 if done else float(progress.get("fraction", 0.0)) if record.status != JobStatus.PENDING else 0.0
    eta = _eta_seconds(progress, record.status)
    return {
        **record.to_json(), "progress": round(fraction, 4), "eta": format_eta(eta), "eta_s": eta,
        "epoch": progress.get("epoch"), "restarts": own.get("restarts", 0),
        "last_fault": own.get("last_fault"),
        "error": own.get("error") if record.status in (JobStatus.FAILED, JobStatus.CANCELLED) else None,
        "traceback": own.get("traceback") if record.status == JobStatus.FAILED else None,
    }


def status_document(registry: JobRegistry, record: JobRecord, *, fresh: bool = False) -> dict[str, Any]:
    """`record`'s document, asking the schedulers first unless `fresh` (the caller just refreshed it)."""
    children = registry.children(record.id)
    if not fresh:
        refresh(registry, [record, *children])
    return job_status(record) if record.kind == "job" and not children else parent_status(record, children)


def parent_status(record: JobRecord, children: Sequence[JobRecord]) -> dict[str, Any]:
    """A batch, sweep or pipeline, with one entry per task (and per trial count or stage)."""
    tasks = [job_status(child) for child in children]
    summary = job_status(record)
    summary["tasks"] = tasks
    if record.kind == "sweep":
        summary.update(sweep_details(record))
    elif record.kind == "pipeline":
        summary.update(pipeline_details(record, tasks))
    elif tasks:  # a batch: how far its jobs are together; done when the slowest is
        summary["progress"] = round(sum(t["progress"] for t in tasks) / len(tasks), 4)
        etas = [t["eta_s"] for t in tasks]
        summary["eta_s"] = None if any(e is None for e in etas) else max(etas)
        summary["eta"] = format_eta(summary["eta_s"])
    failed = [t for t in tasks if t["status"] in ("failed", "timeout")]
    if failed and not summary.get("error"):
        summary["error"] = "; ".join(f"{t['name']} ({t['id']}) {t['status']}: {t['error'] or 'no error recorded'}"
                                     for t in failed)
    return summary


def sweep_details(record: JobRecord) -> dict[str, Any]:
    """Trials finished of the budget and the best so far, from the sweep's results.json (workers write it)."""
    results = read_json(Path(record.run_dir) / "results.json") or {}
    budget = results.get("budget", record.extra.get("budget"))
    details = {"trials": {"finished": results.get("finished", 0), "budget": budget,
                          "states": results.get("states", {})},
               "best_value": results.get("best_value"), "best_params": results.get("best_params"),
               "metric": record.extra.get("metric"), "strategy": record.extra.get("strategy")}
    if record.status == JobStatus.COMPLETED:
        details["progress"] = 1.0
    return details


def pipeline_details(record: JobRecord, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Each stage's status, and why a stage that never ran was cancelled."""
    stages = []
    failed_at: str | None = None
    for task, stage in zip(tasks, record.extra.get("stages", [])):
        entry = {"stage": stage["stage"], "script": stage["script"], "id": task["id"], "status": task["status"],
                 "error": task["error"]}
        if failed_at is not None and task["status"] == "cancelled":
            entry["note"] = f"not run: stage {failed_at!r} failed"
        elif task["status"] in ("failed", "timeout", "cancelled") and failed_at is None:
            failed_at = stage["stage"]
        stages.append(entry)
    done = sum(t["status"] == "completed" for t in tasks)
    return {"stages": stages, "progress": round(done / len(tasks), 4) if tasks else 0.0,
            "failed_stage": failed_at}
