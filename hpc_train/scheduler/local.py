"""Run jobs on this machine through submitit's LocalExecutor (several ranks: under mpirun)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hpc_train.processes import pid_alive
from hpc_train.registry import JobRecord
from hpc_train.render import RenderContext, job_environment, render_setup, worker_command
from hpc_train.rundir import RunDirectory
from hpc_train.scheduler.base import Scheduler, SubmissionPlan
from hpc_train.spec import JobSpec
from hpc_train.status import JobStatus


def run_local_job(command: list[str], world_size: int) -> int:
    """What the local executor runs: the worker, under mpirun when the job has several ranks."""
    from hpc_train.commands import run_command
    from hpc_train.runtime.launch import mpirun_command

    argv = mpirun_command(world_size, command) if world_size > 1 else command
    result = run_command(argv, timeout=7 * 86400, check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"job command exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.returncode


class LocalScheduler(Scheduler):
    """This machine, no SLURM. The job id is the submitit controller's pid."""

    name = "local"

    def plan(self, spec: JobSpec, context: RenderContext) -> SubmissionPlan:
        params = {"timeout_min": max(1, spec.resources.time // 60)}
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
        try:
            with _detached_stdio():
                job = executor.submit(run_local_job, plan.command, plan.spec.world_size)
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return str(job.job_id)

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        return {record.id: local_status(record) for record in records}

    def cancel(self, record: JobRecord) -> None:
        if record.scheduler_id and _alive(int(record.scheduler_id)):
            os.kill(int(record.scheduler_id), signal.SIGINT)
        RunDirectory(record.run_dir).write_status(JobStatus.CANCELLED, error="cancelled by user")


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
    alive = bool(record.scheduler_id) and _alive(int(record.scheduler_id or 0))
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
