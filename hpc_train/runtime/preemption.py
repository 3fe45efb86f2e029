"""Preemption: catch the scheduler's warning signal, checkpoint at the next step, requeue, exit.

The signal handler only sets a flag (no I/O, no locks); the trainer checks the flag at each
optimizer-step boundary, all ranks agree on it with one collective, write the checkpoint, and
rank 0 asks SLURM to requeue the job. On restart the trainer resumes from that checkpoint.

One mechanism under submitit too: hpc-train asks submitit for `--signal=USR1@grace` and this
guard replaces submitit's own handlers (USR2 checkpoint/requeue, SIGTERM bypass) inside the job,
so a preempted job never hangs on submitit's ignored SIGTERM.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hpc_train.commands import run_command
from hpc_train.errors import UserError

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class PreemptionGuard:
    """Installs flag-only handlers for the preemption signals; callable as the trainer's should_stop."""

    def __init__(self, signals: Iterable[int] = DEFAULT_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.received: int | None = None
        self.received_at: float | None = None  # time.time() of the first signal
        self.seen_at: float | None = None  # when the trainer first polled the flag after it
        self._previous: dict[int, Any] = {}
        self._ignoring = False

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        # Only a flag and a timestamp: the checkpoint happens at the next step boundary. The first
        # signal is the one reported (the SIGTERM of the requeue that follows must not replace it).
        if self.received is None:
            self.received, self.received_at = signum, time.time()

    def install(self) -> Self:
        """Take over the signals (main thread only); installing twice keeps the first handlers."""
        if self._previous and not self._ignoring:
            return self
        for sig in self.signals:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)
        self._ignoring = False
        return self

    def ignore(self) -> None:
        """Ignore the signals from now on: the work is done, and a late notice must not kill the exiting process.

        SLURM's time-limit warning often lands after the last step; at interpreter exit CPython resets
        Python-level handlers to SIG_DFL (terminate), so without this a finished job can end as FAILED.
        """
        for sig in self.signals:
            previous = signal.signal(sig, signal.SIG_IGN)
            self._previous.setdefault(sig, previous)
        self._ignoring = True

    def uninstall(self) -> None:
        """Give the signals back to their previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self._ignoring = False

    @property
    def installed(self) -> bool:
        return bool(self._previous) and not self._ignoring

    def reset(self) -> None:
        """Forget a received signal (after it was acted on)."""
        self.received = self.received_at = self.seen_at = None

    def __call__(self) -> bool:
        if self.received is None:
            return False
        if self.seen_at is None:
            self.seen_at = time.time()
        return True

    @property
    def signal_name(self) -> str | None:
        """'SIGUSR1' etc. once a signal arrived."""
        return signal.Signals(self.received).name if self.received is not None else None

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


_PROCESS_GUARD = PreemptionGuard()


def process_guard() -> PreemptionGuard:
    """The one guard of this process; the worker installs it first thing, before slow imports."""
    return _PROCESS_GUARD


def slurm_job_to_requeue(environ: Mapping[str, str] | None = None) -> str | None:
    """The id `scontrol requeue` needs: '<array job>_<task>' for array tasks, else the job id."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def restart_count(environ: Mapping[str, str] | None = None) -> int:
    """How often SLURM has restarted this job (SLURM_RESTART_COUNT)."""
    env = os.environ if environ is None else environ
    return int(env.get("SLURM_RESTART_COUNT", "0") or 0)


def job_to_requeue(max_requeues: int, environ: Mapping[str, str] | None = None) -> str | None:
    """The SLURM job `scontrol requeue` should requeue now, or None (outside SLURM, or max_requeues reached)."""
    job = slurm_job_to_requeue(environ)
    if job is not None and restart_count(environ) >= max_requeues:
        log.warning("job %s reached preemption.max_requeues=%d; not requeueing", job, max_requeues)
        return None
    return job


def request_requeue(max_requeues: int, environ: Mapping[str, str] | None = None) -> bool:
    """Ask SLURM to requeue this job unless max_requeues is reached; False outside SLURM or at the cap."""
    job = job_to_requeue(max_requeues, environ)
    if job is None:
        return False
    try:
        run_command(["scontrol", "requeue", job], timeout=30, retries=2)
    except UserError as exc:
        log.error("could not requeue job %s: %s", job, exc)
        return False
    return True
