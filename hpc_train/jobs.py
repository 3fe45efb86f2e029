"""Submitting specs and tracking them: the one place where submission side effects happen.

The CLI verbs and the orchestrator both go through here, so a job submitted one way is seen
the same way by the other.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_train.errors import JobNotFound, SpecError, UserError
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.render import RenderContext
from hpc_train.rundir import RunDirectory
from hpc_train.scheduler.base import Scheduler, SubmissionPlan
from hpc_train.spec import JobSpec, dump_spec, resolve_paths
from hpc_train.status import JobStatus

EXECUTORS = ("auto", "local", "slurm", "sbatch")


# Executors whose jobs one status query answers together: plain sbatch jobs are SLURM jobs too.
STATUS_SOURCE = {"sbatch": "slurm"}


def slurm_available() -> bool:
    """True when `sbatch` is on PATH and the controller answers `scontrol ping` (one quick try)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    from hpc_train.scheduler.slurm import ping_controller

    try:
        return ping_controller() is None
    except UserError:
        return False


def get_scheduler(executor: str) -> Scheduler:
    """The scheduler for an executor name; `auto` picks SLURM when sbatch answers, else local."""
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if executor == "auto":
        executor = "slurm" if slurm_available() else "local"
    if executor == "local":
        from hpc_train.scheduler.local import LocalScheduler

        return LocalScheduler()
    from hpc_train.scheduler.slurm import SbatchScheduler, SlurmScheduler

    return SbatchScheduler() if executor == "sbatch" else SlurmScheduler()


@dataclass
class PreparedJob:
    """A job with its id, resolved spec and run directory chosen, not yet submitted."""

    id: str
    spec: JobSpec
    run_dir: RunDirectory
    context: RenderContext


def prepare_job(spec: JobSpec, *, base_dir: Path, run_dir: Path | None = None, job_id: str | None = None,
                array: str | None = None, dependency: str | None = None, write: bool = True) -> PreparedJob:
    """Choose the id and run directory, resolve relative paths; with write, create the directory."""
    job_id = job_id or JobRegistry.new_id()
    spec = resolve_paths(spec, base_dir)
    directory = (run_dir or Path(spec.output_dir) / f"{spec.name}-{job_id}").absolute()
    rd = RunDirectory(directory)
    context = RenderContext(spec_path=str(rd.spec_path), run_dir=str(directory), python=sys.executable,
                            array=array, dependency=dependency)
    if write:
        rd.create()
        rd.spec_path.write_text(dump_spec(spec))
    return PreparedJob(job_id, spec, rd, context)


def check_job(spec: JobSpec, *, executor: str = "auto", base_dir: Path) -> str:
    """Ask the scheduler whether it would take the spec, submitting nothing (SLURM: `sbatch --test-only`).

    Returns the scheduler's name; with `auto` and no SLURM answering, that is `local` (nothing to ask).
    """
    scheduler = get_scheduler(executor)
    prepared = prepare_job(spec, base_dir=base_dir, write=False)
    scheduler.check(scheduler.plan(prepared.spec, prepared.context))
    return scheduler.name


def submit_job(spec: JobSpec, *, executor: str = "auto", base_dir: Path, registry: JobRegistry,
               dry_run: bool = False, run_dir: Path | None = None, parent: str | None = None,
               dependency: str | None = None, name: str | None = None,
               job_id: str | None = None) -> JobRecord | SubmissionPlan:
    """Plan and submit one spec; with dry_run return the plan and touch nothing."""
    scheduler = get_scheduler(executor)
    if dependency and scheduler.name == "local":
        raise UserError(f"--dependency {dependency} needs SLURM, and this job would run on this machine\n"
                        "HINT: submit with --executor slurm (or --sbatch), or wait for the other job first")
    prepared = prepare_job(spec, base_dir=base_dir, run_dir=run_dir, dependency=dependency, write=False,
                           job_id=job_id)
    plan = scheduler.plan(prepared.spec, prepared.context)
    if dry_run:
        return plan
    scheduler.check(plan)  # what SLURM would refuse (sbatch --test-only), before anything is written
    existed = prepared.run_dir.path.exists()  # a run directory being resumed must survive a failed submit
    try:
        prepared.run_dir.create()
        prepared.run_dir.spec_path.write_text(dump_spec(prepared.spec))
        scheduler_id = scheduler.submit(plan)
    except BaseException:
        if not existed:
            shutil.rmtree(prepared.run_dir.path, ignore_errors=True)  # nothing was submitted: leave no trace
        raise
    record = JobRecord(id=prepared.id, name=name or spec.name, kind="job", executor=scheduler.name,
                       scheduler_id=scheduler_id, run_dir=str(prepared.run_dir.path), status=JobStatus.PENDING,
                       parent=parent)
    return registry.add(record)


# sbatch --dependency types that take job ids (`singleton` takes none).
DEPENDENCY_TYPES = ("after", "afterany", "afterburstbuffer", "aftercorr", "afternotok", "afterok")
_SLURM_ID = re.compile(r"\d+(?:_\d+)?(?:\+\d+)?")


def resolve_dependency(dependency: str, registry: JobRegistry) -> str:
    """A --dependency whose job ids may be hpc-train ids (or unique prefixes), in SLURM's ids.

    `afterok:3f2a91c0,afterany:1234` -> `afterok:5678,afterany:1234`; SLURM ids pass unchanged unless
    they are exactly an hpc-train id. A sweep or batch stands for all its SLURM jobs. Jobs that did
    not go to SLURM, unknown ids and unknown types are user errors.
    """
    def fail(message: str, value: str, allowed: Sequence[str] | None = None) -> SpecError:
        return SpecError(message, file="command line", key="--dependency", value=value, allowed=allowed,
                         hint="e.g. afterok:<hpc-train id or SLURM job id>[:...], items joined by , (all) or ? (any)")

    separator = "?" if "?" in dependency else ","
    items = []
    for item in dependency.split(separator):
        kind, _, ids = item.partition(":")
        if kind == "singleton" and not ids:
            items.append(kind)
            continue
        if kind not in DEPENDENCY_TYPES or not ids:
            raise fail("not a dependency SLURM takes", item, [*DEPENDENCY_TYPES, "singleton"])
        items.append(":".join([kind, *(_slurm_ids(job, registry, fail) for job in ids.split(":"))]))
    return separator.join(items)


def _slurm_ids(job: str, registry: JobRegistry, fail: Any) -> str:
    looks_like_slurm = _SLURM_ID.fullmatch(job) is not None
    try:
        record = registry.get(job)
    except JobNotFound:
        if looks_like_slurm:
            return job
        raise
    if looks_like_slurm and record.id != job:
        return job  # digits that merely begin an hpc-train id: SLURM's
    if record.executor not in ("slurm", "sbatch"):
        raise fail(f"job {record.id} ran on {record.executor}, not SLURM", job)
    ids = [record.scheduler_id] if record.scheduler_id and _SLURM_ID.fullmatch(record.scheduler_id) else [
        c.scheduler_id for c in registry.children(record.id) if c.scheduler_id and _SLURM_ID.fullmatch(c.scheduler_id)]
    if not ids:
        raise fail(f"{record.kind} {record.id} has no SLURM job to wait for", job)
    return ":".join(dict.fromkeys(ids))


def combined_status(statuses: Sequence[JobStatus]) -> JobStatus:
    """The status of a batch, sweep or pipeline from its tasks' statuses."""
    if any(not s.is_terminal for s in statuses):
        return JobStatus.PENDING if all(s == JobStatus.PENDING for s in statuses) else JobStatus.RUNNING
    for status in (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.PREEMPTED, JobStatus.CANCELLED):
        if status in statuses:
            return status
    return JobStatus.COMPLETED


def refresh(registry: JobRegistry, records: Sequence[JobRecord]) -> list[JobRecord]:
    """Ask each scheduler once for the status of its non-terminal jobs; store and return fresh records.

    A batch, sweep or pipeline takes its status from its tasks (refreshed in the same query).
    """
    parents = {r.id: registry.children(r.id) for r in records if r.kind != "job" and not r.status.is_terminal}
    given = {r.id: r for r in records}
    for group in parents.values():
        group[:] = [given.get(child.id, child) for child in group]
    tasks = list(records) + [c for group in parents.values() for c in group if c.id not in given]
    by_executor: dict[str, list[JobRecord]] = {}
    for record in tasks:
        if record.kind == "job" and not record.status.is_terminal:
            by_executor.setdefault(STATUS_SOURCE.get(record.executor, record.executor), []).append(record)
    changed: dict[str, JobStatus] = {}
    for executor, group in by_executor.items():
        statuses = get_scheduler(executor).statuses(group)
        for record in group:
            new = statuses.get(record.id, record.status)
            if new != record.status:
                changed[record.id] = record.status = new
    for record in records:
        if parents.get(record.id):
            new = combined_status([c.status for c in parents[record.id]])
            if new != record.status:
                changed[record.id] = record.status = new
    registry.update_statuses(changed)  # one transaction, however many jobs changed
    return list(records)


def cancel_jobs(registry: JobRegistry, record: JobRecord) -> list[JobRecord]:
    """Stop a job, or every unfinished task of a batch, sweep or pipeline; returns the tasks stopped.

    The one cancel of the CLI and the Python API: statuses are asked first (a task that has ended
    stays as it ended), then each scheduler cancels its live tasks with one call.
    """
    targets = refresh(registry, registry.children(record.id) or [record])
    live: dict[str, list[JobRecord]] = {}
    for target in targets:
        if not target.status.is_terminal:
            live.setdefault(target.executor, []).append(target)
    for executor, group in live.items():
        get_scheduler(executor).cancel_many(group)
    stopped = [target for group in live.values() for target in group]
    for target in stopped:
        target.status = JobStatus.CANCELLED
    registry.update_statuses({target.id: JobStatus.CANCELLED for target in stopped})
    if record.kind != "job" and not record.status.is_terminal:
        registry.update(record.id, status=JobStatus.CANCELLED)
    return stopped


def wait_for(registry: JobRegistry, job_ids: Sequence[str], *, timeout: float | None = None,
             poll: float = 1.0, max_poll: float = 15.0, on_poll: object = None) -> list[JobRecord]:
    """Poll (with back-off) until every job is terminal or the timeout passes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll
    while True:
        records = refresh(registry, [registry.get(i) for i in job_ids])
        if callable(on_poll):
            on_poll(records)
        if all(r.status.is_terminal for r in records):
            return records
        if deadline is not None and time.monotonic() >= deadline:
            return records
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(max_poll, delay * 1.5)
