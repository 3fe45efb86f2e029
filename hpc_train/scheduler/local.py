"""Run jobs on this machine through submitit's LocalExecutor (several ranks: under mpirun).

Time limit. submitit's own timer (timeout_min) ends the tasks with SIGINT then SIGKILL one second later,
and its warning signal (USR2, signal_delay_s before) goes to submitit's Python wrapper, not to the
training ranks. So hpc-train keeps its own timer in `run_local_job`, as SLURM's `--signal=SIG@grace`
does: at resources.time - preemption.grace_seconds every process below the wrapper (the ranks, and
mpirun) gets preemption.signal, the PreemptionGuard checkpoints at the next step and the worker exits;
whatever still runs at resources.time is killed. The job then ends TIMEOUT, with its checkpoint, and a
new `submit`/`run` with the same checkpoint.dir resumes it. submitit's timer is set well after ours
(and its warning never fires) so that it is never the one that ends the job.

Output. The worker writes straight into submitit's `<pid>_0_log.out|err` (unbuffered), so `hpc-train
logs ID` shows it while the job runs.

Identity. The job id is the controller's pid; its start time (psutil create_time, from /proc) is kept in
the run directory (`local_process.json`), so a pid reused after a reboot or a long time is not taken
for the job: the job shows as ended and `cancel` signals nothing. Records without that file (older
hpc-train) are judged by the pid alone, as before.

Cancel. The cancel may come before submitit's controller has even started its child. So `cancel`
writes a marker (`cancelled` in the run directory) that `run_local_job` checks before it starts the
worker, then freezes (SIGSTOP) the controller and, repeatedly, every descendant until no new one
appears, and kills them all (SIGKILL): a process that is stopped cannot start another, so none
escapes; the status (cancelled) is written after that, so no late worker can overwrite it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hpc_train.processes import pid_alive
from hpc_train.registry import JobRecord
from hpc_train.render import RenderContext, job_environment, render_setup, worker_command
from hpc_train.rundir import RunDirectory, read_json, write_json_atomic
from hpc_train.scheduler.base import Scheduler, SubmissionPlan
from hpc_train.spec import JobSpec
from hpc_train.status import JobStatus

IDENTITY_FILE = "local_process.json"
CANCEL_MARKER = "cancelled"
# submitit's own timer: this long after hpc-train's kill, as a last resort only
_SUBMITIT_SLACK_S = 300


def run_local_job(command: list[str], world_size: int, run_dir: str | None = None,
                  time_limit: float | None = None, grace: float = 0.0, signal_name: str = "USR1") -> int:
    """What the local executor runs: the worker (under mpirun when the job has several ranks), with the
    time limit enforced as a preemption signal `grace` seconds before `time_limit`, then a kill."""
    from hpc_train.runtime.launch import mpirun_command

    if run_dir and (Path(run_dir) / CANCEL_MARKER).exists():
        return 0  # cancelled before the worker started: it never starts
    argv = mpirun_command(world_size, command) if world_size > 1 else command
    sys.stdout.flush()
    sys.stderr.flush()
    # inherit this process's stdout/stderr (submitit's log files): the output lands there as it is written
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    limit = time_limit if time_limit else 7 * 86400.0
    try:
        code = proc.wait(timeout=max(0.0, limit - grace))
    except subprocess.TimeoutExpired:
        _signal_tree(os.getpid(), getattr(signal, f"SIG{signal_name}"))
        try:
            code = proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_tree(os.getpid(), signal.SIGKILL)
            code = proc.wait()
        if run_dir:
            RunDirectory(run_dir).write_status(JobStatus.TIMEOUT, error=f"time limit of {limit:g} s reached",
                                               exit_code=code)
        print(f"hpc-train: time limit of {limit:g} s reached; the job ends TIMEOUT (exit {code})", file=sys.stderr)
        return code
    if code != 0:
        raise RuntimeError(f"job command exited {code}")
    return code


def _signal_tree(pid: int, signum: int) -> None:
    """Send `signum` to every process below `pid`."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(signum)


def process_start_time(pid: int) -> float | None:
    """When the process with this pid started (seconds since the epoch), None when there is none."""
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except psutil.Error:
        return None


class LocalScheduler(Scheduler):
    """This machine, no SLURM. The job id is the submitit controller's pid (its start time is kept in
    the run directory, see the module's docstring)."""

    name = "local"

    def plan(self, spec: JobSpec, context: RenderContext) -> SubmissionPlan:
        limit = spec.resources.time
        params = {"timeout_min": -(-(limit + _SUBMITIT_SLACK_S) // 60), "signal_delay_s": 0}
        command = worker_command(spec, context)
        return SubmissionPlan(executor=self.name, spec=spec, run_dir=Path(context.run_dir), context=context,
                              parameters=params, setup=render_setup(spec, context).splitlines(),
                              command=command)

    def submit(self, plan: SubmissionPlan) -> str:
        import submitit

        folder = plan.run_dir / "submitit"
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(**plan.parameters)
        env = job_environment(plan.spec, plan.context)
        old = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # the controller inherits our environment
        preemption = plan.spec.preemption
        try:
            with _detached_stdio():
                job = executor.submit(run_local_job, plan.command, plan.spec.world_size, str(plan.run_dir),
                                      float(plan.spec.resources.time), float(preemption.grace_seconds),
                                      preemption.signal)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        pid = int(job.job_id)
        write_json_atomic(plan.run_dir / IDENTITY_FILE, {"pid": pid, "started": process_start_time(pid)})
        return str(pid)

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        return {record.id: local_status(record) for record in records}

    def cancel(self, record: JobRecord) -> None:
        run_dir = RunDirectory(record.run_dir)
        if run_dir.path.is_dir():
            (run_dir.path / CANCEL_MARKER).write_text(f"{time.time()}\n")
        pid = controller_pid(record)
        if pid is not None:
            _end_tree(pid)
        run_dir.write_status(JobStatus.CANCELLED, error="cancelled by user")


def controller_pid(record: JobRecord) -> int | None:
    """The pid of the job's controller when that process still runs (and is the one hpc-train started)."""
    if not record.scheduler_id or not record.scheduler_id.isdigit():
        return None
    pid = int(record.scheduler_id)
    if not _alive(pid):
        return None
    identity: dict[str, Any] | None = read_json(Path(record.run_dir) / IDENTITY_FILE)
    if identity is None or identity.get("pid") != pid:
        return pid  # a record from before start times were kept: the pid alone, as then
    started = identity.get("started")
    return pid if started is not None and process_start_time(pid) == started else None


def _end_tree(pid: int, timeout: float = 10.0) -> None:
    """Freeze the process and all its descendants (until no new one appears), then kill them all."""
    import psutil

    try:
        root = psutil.Process(pid)
        root.suspend()
    except psutil.Error:
        return
    frozen: dict[int, psutil.Process] = {pid: root}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = [p for p in root.children(recursive=True) if p.pid not in frozen]
        except psutil.Error:
            found = []
        for process in found:
            with contextlib.suppress(psutil.Error):
                process.suspend()
            frozen[process.pid] = process
        if not found:
            break
    for process in frozen.values():
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(list(frozen.values()), timeout=timeout)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child


@contextlib.contextmanager
def _detached_stdio() -> Iterator[None]:
    """Point fds 0-2 at /dev/null while submitit starts its controller, so the background job does
    not hold the caller's pipes open (`id=$(hpc-train submit ...)` must return at once)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in zip((0, 1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def local_status(record: JobRecord) -> JobStatus:
    """Status from the job's own status.json and whether its controller process still lives."""
    own = RunDirectory(record.run_dir).status_record() or {}
    status = JobStatus(own.get("status", JobStatus.PENDING.value))
    alive = controller_pid(record) is not None
    if alive and status == JobStatus.PREEMPTED:
        # the worker stopped on a signal; the controller is still deciding what that was (the time limit
        # makes it TIMEOUT), and a terminal state shown now would be frozen in the registry
        return JobStatus.RUNNING
    if status.is_terminal or alive:
        return status
    # the controller is gone without the job saying it finished: it crashed or was killed
    return JobStatus.FAILED if status in (JobStatus.RUNNING, JobStatus.PENDING) else status


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:  # a zombie child of ours counts as ended
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
