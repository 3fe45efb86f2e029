"""The one job-status type of hpc-train; SLURM and local states map onto it through tables."""

from __future__ import annotations

from enum import Enum


class JobStatus(str, Enum):
    """Where a job (or array task) stands. Every module uses this type; none invents its own."""

    PENDING = "pending"
    RUNNING = "running"
    REQUEUED = "requeued"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """True when the job will not change state again on its own."""
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


# PREEMPTED is terminal: a preempted job that will come back shows REQUEUED/PENDING instead
# (SLURM with --requeue, or hpc-train's own requeue); one that stays PREEMPTED was not requeued.
_TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT, JobStatus.PREEMPTED}
)

# sacct/squeue state names -> JobStatus.
SLURM_STATES: dict[str, JobStatus] = {
    "PENDING": JobStatus.PENDING,
    "CONFIGURING": JobStatus.PENDING,
    "REQUEUED": JobStatus.REQUEUED,
    "REQUEUE_FED": JobStatus.REQUEUED,
    "REQUEUE_HOLD": JobStatus.REQUEUED,
    "RESV_DEL_HOLD": JobStatus.PENDING,
    "SPECIAL_EXIT": JobStatus.REQUEUED,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETING": JobStatus.RUNNING,
    "STAGE_OUT": JobStatus.RUNNING,
    "SIGNALING": JobStatus.RUNNING,
    "RESIZING": JobStatus.RUNNING,
    "SUSPENDED": JobStatus.RUNNING,
    "STOPPED": JobStatus.RUNNING,
    "COMPLETED": JobStatus.COMPLETED,
    "FAILED": JobStatus.FAILED,
    "BOOT_FAIL": JobStatus.FAILED,
    "NODE_FAIL": JobStatus.FAILED,
    "OUT_OF_MEMORY": JobStatus.FAILED,
    "DEADLINE": JobStatus.TIMEOUT,
    "TIMEOUT": JobStatus.TIMEOUT,
    "CANCELLED": JobStatus.CANCELLED,
    "REVOKED": JobStatus.CANCELLED,
    "PREEMPTED": JobStatus.PREEMPTED,
}


def from_slurm(state: str) -> JobStatus:
    """Map a sacct state such as 'CANCELLED by 0' or 'RUNNING' onto JobStatus."""
    head = state.strip().split()[0].rstrip("+") if state.strip() else ""
    return SLURM_STATES.get(head.upper(), JobStatus.UNKNOWN)
