"""Many training jobs at once (one SLURM array per set of equal resources), and picking the best one."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_train.errors import UserError
from hpc_train.jobs import get_scheduler, prepare_job, refresh
from hpc_train.metrics import METRIC_DIRECTIONS
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.scheduler.base import PartialSubmission
from hpc_train.spec import JobSpec
from hpc_train.status import JobStatus


class BatchPartlySubmitted(UserError):
    """A batch whose submission failed part-way. The jobs the scheduler accepted are registered under the
    batch and run on (cancelling them would throw away work the user asked for; `hpc-train cancel BATCH`
    does it in one command); the others are registered as failed, "not submitted", with the reason."""

    def __init__(self, parent: JobRecord, children: Sequence[JobRecord], scheduler_ids: dict[int, str],
                 cause: BaseException) -> None:
        self.parent, self.children, self.cause = parent, list(children), cause
        accepted = [f"{c.name} ({c.id}, {c.executor} {c.scheduler_id})" for n, c in enumerate(children)
                    if n in scheduler_ids]
        failed = [f"{c.name} ({c.id})" for n, c in enumerate(children) if n not in scheduler_ids]
        super().__init__(
            f"batch {parent.name} ({parent.id}) was submitted only in part: {len(accepted)} of {len(children)} jobs "
            f"accepted: {', '.join(accepted)}; not submitted: {', '.join(failed)}, because: {cause}\n"
            f"HINT: the accepted jobs run on (`hpc-train status {parent.id}`); fix the cause and submit the "
            f"failed ones again, or stop the batch with `hpc-train cancel {parent.id}`")


MODES = {"max": "max", "maximize": "max", "min": "min", "minimize": "min"}


def submit_batch(specs: Sequence[JobSpec], *, name: str, executor: str, registry: JobRegistry, base_dir: Path,
                 output_dir: str, parallel: int | None = None) -> tuple[JobRecord, list[JobRecord]]:
    """Submit the specs as one batch: on SLURM one array per distinct resources (usually exactly one)."""
    if not specs:
        raise UserError("submit_batch_training needs at least one job config")
    scheduler = get_scheduler(executor)
    batch_id = JobRegistry.new_id()
    batch_dir = (Path(output_dir) / f"{name}-{batch_id}").absolute()
    prepared = [prepare_job(spec, base_dir=base_dir, run_dir=batch_dir / f"{n}-{spec.name}") for n, spec in
                enumerate(specs)]
    plans = [scheduler.plan(p.spec, p.context) for p in prepared]
    groups: dict[str, list[int]] = {}
    for n, spec in enumerate(specs):
        groups.setdefault(json.dumps(spec.resources.model_dump(mode="json"), sort_keys=True), []).append(n)
    for members in groups.values():  # what SLURM would refuse (sbatch --test-only), before anything is queued
        try:
            scheduler.check(plans[members[0]])
        except BaseException:
            shutil.rmtree(batch_dir, ignore_errors=True)
            raise
    scheduler_ids: dict[int, str] = {}
    failure: BaseException | None = None
    try:
        for members in groups.values():
            try:
                ids = scheduler.submit_array([plans[n] for n in members], parallel=parallel)
            except PartialSubmission as partial:
                scheduler_ids.update(zip(members, partial.ids))
                raise partial.cause from partial
            scheduler_ids.update(zip(members, ids))
    except BaseException as exc:
        if not scheduler_ids:
            shutil.rmtree(batch_dir, ignore_errors=True)  # nothing was submitted: leave no trace
            raise
        failure = exc  # some jobs were accepted: they run, so they are kept and registered
    parent = registry.add(JobRecord(id=batch_id, name=name, kind="batch", executor=scheduler.name,
                                    scheduler_id=None, run_dir=str(batch_dir), status=JobStatus.PENDING,
                                    extra={"size": len(specs)}))
    now = time.time()
    children = []
    for n, p in enumerate(prepared):
        extra: dict[str, Any] = {"index": n, "model": p.spec.model.type}
        if n not in scheduler_ids:  # never submitted: failed, with the reason in its run directory
            extra["error"] = f"not submitted: {failure}"
            p.run_dir.write_status(JobStatus.FAILED, error=extra["error"])
        children.append(registry.add(JobRecord(
            id=p.id, name=p.spec.name, kind="job", executor=scheduler.name, scheduler_id=scheduler_ids.get(n),
            run_dir=str(p.run_dir.path), status=JobStatus.PENDING if n in scheduler_ids else JobStatus.FAILED,
            parent=batch_id, created=now + n * 1e-3, extra=extra)))
    if failure is not None:
        if not isinstance(failure, Exception):
            raise failure  # Ctrl-C and the like: registered, now stop as asked
        raise BatchPartlySubmitted(parent, children, scheduler_ids, failure) from failure
    return parent, children


@dataclass
class BestModel:
    """The best job of a set by one metric: its id, results and trained model file."""

    id: str
    name: str
    metric: str
    value: float
    results: dict[str, Any]
    model_path: str | None
    run_dir: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "metric": self.metric, "value": self.value,
                "model_path": self.model_path, "run_dir": self.run_dir, "results": self.results}


def select_best(registry: JobRegistry, records: Sequence[JobRecord], metric: str = "f1_score",
                mode: str | None = None) -> BestModel:
    """The completed job with the best `metric` (mode max/min; default from the metric: loss is min)."""
    if not records:
        raise UserError("select_best_model needs at least one job")
    if mode is not None and mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; allowed: max, min")
    direction = MODES[mode] if mode else METRIC_DIRECTIONS.get(metric, "max")
    records = refresh(registry, list(records))
    finished = [(r, RunDirectory(r.run_dir).results() or {}) for r in records if r.status == JobStatus.COMPLETED]
    finished = [(r, res) for r, res in finished if res]
    known = sorted({k for _, res in finished for k, v in res.items() if _is_number(v)} | set(METRIC_DIRECTIONS))
    if metric not in known:
        raise UserError(f"unknown metric {metric!r}; allowed: {', '.join(known)}")
    if not finished:
        raise UserError("no job succeeded, so there is no best model: " + "; ".join(
            f"{r.name} ({r.id}) is {r.status.value}" for r in records))
    scored = [(r, res) for r, res in finished if _is_number(res.get(metric))]
    if not scored:
        raise UserError(f"no completed job recorded {metric!r}; jobs: " + ", ".join(r.id for r, _ in finished))
    pick = max if direction == "max" else min
    best, results = pick(scored, key=lambda item: float(item[1][metric]))
    return BestModel(id=best.id, name=best.name, metric=metric, value=float(results[metric]), results=results,
                     model_path=results.get("model_path"), run_dir=best.run_dir)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
