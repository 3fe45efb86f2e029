"""Dependencies that can never be met, found before the job is queued.

`--dependency afterok:123` on a job that already failed leaves the new job waiting forever
(`DependencyNeverSatisfied`) or, with `kill_invalid_depend`, cancels it as soon as it is queued.
Either way nothing runs; hpc-train says so at submission instead, naming the job and its end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hpc_train.errors import SpecError
from hpc_train.status import JobStatus

# type -> does a job that ended with this status still allow the dependent to start?
_MET_BY: dict[str, Callable[[JobStatus], bool]] = {
    "afterok": lambda end: end == JobStatus.COMPLETED,
    "afternotok": lambda end: end != JobStatus.COMPLETED,
}


def never_met(dependency: str, ended: Mapping[str, JobStatus]) -> str | None:
    """Why `dependency` can never be met, given the jobs that have ended for good (id -> end); else None.

    Items joined by `,` must all be met, so one impossible item is enough; items joined by `?` need
    only one, so all must be impossible. Types other than afterok/afternotok are met by any end.
    """
    separator = "?" if "?" in dependency else ","
    reasons = [reason for item in dependency.split(separator) if (reason := _item_never_met(item, ended))]
    if separator == "," and reasons:
        return reasons[0]
    if separator == "?" and reasons and len(reasons) == len(dependency.split(separator)):
        return "; ".join(reasons)
    return None


def _item_never_met(item: str, ended: Mapping[str, JobStatus]) -> str | None:
    kind, _, ids = item.partition(":")
    met = _MET_BY.get(kind)
    if met is None or not ids:
        return None
    for job in ids.split(":"):
        job = job.split("+", 1)[0]  # afterok:123+10 (minutes after start) is still about job 123
        end = ended.get(job)
        if end is not None and not met(end):
            return f"{kind}:{job} can never be met: SLURM job {job} ended {end.value}"
    return None


def dependency_job_ids(dependency: str) -> list[str]:
    """The SLURM job ids a dependency names."""
    separator = "?" if "?" in dependency else ","
    ids: list[str] = []
    for item in dependency.split(separator):
        ids.extend(job.split("+", 1)[0] for job in item.partition(":")[2].split(":") if job)
    return ids


def check_dependency(dependency: str) -> None:
    """Raise SpecError when the jobs a dependency names have already ended in a way it cannot accept.

    A job that sacct shows ended but slurmctld still holds (requeued) has not ended for good.
    """
    from hpc_train.scheduler.sacct import query_states
    from hpc_train.scheduler.slurm import queue_states

    ids = dependency_job_ids(dependency)
    states = query_states(ids) if ids else {}
    ended = {job: end for job, end in states.items() if end.is_terminal}
    if ended:
        held = queue_states()
        ended = {job: end for job, end in ended.items() if job not in held}
    reason = never_met(dependency, ended)
    if reason:
        raise SpecError(reason, file="command line", key="--dependency", value=dependency,
                        hint="the job would wait forever or be cancelled at once; resubmit the job it "
                             "depends on first, or use afterany")
