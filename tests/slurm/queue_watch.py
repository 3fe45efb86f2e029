"""Waiting on SLURM jobs by events, with budgets that never include time spent queued.

A test cluster runs a few jobs at a time; the rest wait in the queue behind the suite's own jobs for
as long as the machine takes to run those. A deadline that counts queue time therefore passes on a
fast machine and fails on a slow one. Here a job's budget is charged only while SLURM has it out of
the queue (running, completing, being requeued). Queue time is free as long as the cluster is busy
with something; if nothing at all has run for `STALL_S` while a waited-for job is still queued, the
wait fails at once instead (the cluster is stuck, not slow). Every failure says where the time went.

One `QueueWatch` thread polls `squeue` and `sacct` for all watched jobs (two commands a second in
all, not two per waiting thread) and keeps a `JobClock` per job.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

POLL_S = 1.0
STALL_S = 180.0  # nothing running on the whole cluster for this long while a watched job is queued
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}


def clean_env() -> dict[str, str]:
    """This environment without SLURM_* job variables (SLURM_CONF kept)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


def slurm(*argv: str) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, env=clean_env(), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class JobClock:
    """Where one job's time went, as seen by the watcher's polls."""

    queued_s: float = 0.0  # pending in the queue (first start and after each requeue)
    active_s: float = 0.0  # out of the queue: running, completing, being requeued
    state: str = ""  # squeue's state; '' once SLURM no longer lists the job
    reason: str = ""  # squeue's reason while pending
    history: list[str] = field(default_factory=list)  # sacct -D: the state of every run, oldest first

    @property
    def requeues(self) -> int:
        return self.history.count("REQUEUED")

    def describe(self) -> str:
        waiting = f" ({self.reason})" if self.state == "PENDING" and self.reason else ""
        return (f"queued {self.queued_s:.0f} s, active {self.active_s:.0f} s, {self.requeues} requeue(s), "
                f"now {self.state or 'gone from squeue'}{waiting}, sacct runs {self.history}")


class QueueWatch:
    """Polls squeue and sacct for the watched SLURM job ids; waits charge only active time."""

    def __init__(self) -> None:
        self.clocks: dict[str, JobClock] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.last_busy = time.monotonic()  # when some job of the cluster was last seen running
        self.error: Exception | None = None
        self.polls = 0
        self.thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)
        self.thread.start()

    def watch(self, job_id: str) -> JobClock:
        with self.lock:
            clock = self.clocks.setdefault(job_id, JobClock())
        self.poll_now()
        return clock

    def clock(self, job_id: str) -> JobClock:
        with self.lock:
            return self.clocks[job_id]

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)

    def poll_now(self) -> None:
        """One poll from the calling thread (after a submission, so a new job is known at once)."""
        self._poll(0.0)

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(POLL_S):
            now = time.monotonic()
            try:
                self._poll(now - last)
                self.error = None
            except Exception as exc:  # noqa: BLE001 - a slow or restarting slurmctld: poll on, report if it lasts
                self.error = exc
            last = now

    def _poll(self, elapsed: float) -> None:
        with self.lock:
            ids = list(self.clocks)
        queue = {}
        busy = False
        for line in slurm("squeue", "-h", "-o", "%i|%T|%r").splitlines():
            job_id, state, reason = (line.split("|") + ["", ""])[:3]
            busy = busy or state in ("RUNNING", "COMPLETING", "CONFIGURING")
            queue[job_id] = (state, reason)
        runs: dict[str, list[str]] = {}
        if ids:
            out = slurm("sacct", "-D", "-X", "-n", "-P", "-o", "JobIDRaw,State", "-j", ",".join(ids))
            for line in out.splitlines():
                job_id, _, state = line.partition("|")
                if state.strip():
                    runs.setdefault(job_id, []).append(state.split()[0])
        now = time.monotonic()
        with self.lock:
            if busy:
                self.last_busy = now
            for job_id in ids:
                clock = self.clocks[job_id]
                state, reason = queue.get(job_id, ("", ""))
                if clock.state in QUEUED:
                    clock.queued_s += elapsed
                elif clock.state:
                    clock.active_s += elapsed
                clock.state, clock.reason = state, reason
                clock.history = runs.get(job_id, clock.history)
            self.polls += 1

    def wait(self, job_ids: Iterable[str], condition: Callable[[], bool], what: Callable[[], str],
             budget_s: float, *, progress: Callable[[], object] | None = None,
             stop: threading.Event | None = None, poll_s: float = 0.2) -> None:
        """Until `condition()`. Only time some of `job_ids` spends out of the queue is charged to `budget_s`,
        and with `progress`, the budget starts again whenever its value changes (an epoch ended, the
        job was requeued): a slow machine that keeps moving never fails, a hang does."""
        job_ids = list(job_ids)

        def spent() -> float:
            with self.lock:
                return sum(self.clocks[j].active_s for j in job_ids)

        def status() -> str:
            with self.lock:
                return "; ".join(f"job {j}: {self.clocks[j].describe()}" for j in job_ids)

        start = spent()
        mark = progress() if progress is not None else None
        while not condition():
            if progress is not None and (now := progress()) != mark:
                mark, start = now, spent()
            if stop is not None and stop.is_set():
                raise RuntimeError(f"stopped while waiting for {what()}")
            used = spent() - start
            if used > budget_s:
                since = " since the last progress" if progress is not None else ""
                raise TimeoutError(f"{what()}: not within {budget_s:.0f} s of active time{since} ({status()})")
            with self.lock:
                queued = any(self.clocks[j].state in QUEUED for j in job_ids)
                idle = time.monotonic() - self.last_busy
            if queued and idle > STALL_S:
                raise TimeoutError(f"{what()}: nothing has run on the cluster for {idle:.0f} s while the job "
                                   f"waits in the queue ({status()}; last poll error: {self.error})")
            time.sleep(poll_s)
