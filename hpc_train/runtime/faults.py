"""Why a job's previous run ended, worked out when SLURM starts it again (status --json: last_fault).

A run that checkpointed on the preemption signal said so in its status.json before it went. A run that
left no word (its node failed, it was killed, the node ran out of memory) is looked up in accounting:
`sacct -D` keeps one line per run of a requeued job, with its state, nodes and end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpc_train.commands import run_command
from hpc_train.errors import CommandError, SchedulerUnavailable

SACCT_RUNS = ["sacct", "-D", "-X", "-n", "-P", "-o", "State,NodeList,End", "-j"]
# what a run writes after its preemption checkpoint: requeued (it asked SLURM), preempted (the batch shell or
# SLURM requeues), timeout (the time limit's warning)
_CHECKPOINTED_ON_SIGNAL = ("requeued", "preempted", "timeout")
_STILL_GOING = ("RUNNING", "PENDING", "REQUEUED", "RESIZING", "SUSPENDED")


def previous_run_fault(previous: Mapping[str, Any] | None, job_id: str | None) -> str:
    """One line on how the run before this one ended, from its own status record or else from sacct."""
    previous = previous or {}
    if previous.get("status") in _CHECKPOINTED_ON_SIGNAL and previous.get("preempted_by"):
        signal = previous.get("preempted_by") or "a signal"
        return f"checkpointed and requeued on {signal} (preemption or the time limit's warning)"
    said = _sacct_runs(job_id) if job_id else None
    ended = last_ended_run(said or "")
    if ended:
        return ended
    return "the previous run ended without a checkpoint notice (a node failure, a kill or the node's memory)"


def last_ended_run(sacct_text: str) -> str | None:
    """'NODE_FAIL on n2 at 2026-12-01T11:02:03' for the last run in `sacct -D` output that has ended.

    A requeued job's earlier runs show as REQUEUED when their end was a requeue; PREEMPTED and
    NODE_FAIL say more, so they are preferred over a REQUEUED line of the same run.
    """
    runs = [line.split("|") for line in sacct_text.splitlines() if line.count("|") == 2]
    ended = [(state.split()[0], nodes, end) for state, nodes, end in runs
             if state and state.split()[0] not in _STILL_GOING]
    if ended:
        state, nodes, end = ended[-1]
        return f"{state} on {nodes or 'unknown nodes'} at {end}"
    requeued = [(nodes, end) for state, nodes, end in runs if state.startswith("REQUEUED") and end != "Unknown"]
    if requeued:
        nodes, end = requeued[-1]
        return f"requeued from {nodes or 'unknown nodes'} at {end}"
    return None


def _sacct_runs(job_id: str) -> str | None:
    try:
        return run_command([*SACCT_RUNS, job_id], timeout=15, check=False).stdout
    except (CommandError, SchedulerUnavailable, OSError):
        return None
