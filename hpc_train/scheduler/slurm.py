"""SLURM backends: submitit's SlurmExecutor, and plain `sbatch` of the rendered script.

All commands go through hpc_train.commands.run_command (submitit's own sbatch call is replaced
by overriding its `_submit_command` hook), so failures quote SLURM's message plus a hint.
"""

from __future__ import annotations

import functools
import getpass
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core import utils as submitit_utils

from hpc_train.commands import CommandResult, run_command
from hpc_train.errors import CommandError, SchedulerUnavailable
from hpc_train.registry import JobRecord
from hpc_train.render import RenderContext, container_launcher, render_sbatch, render_setup
from hpc_train.scheduler.base import PartialSubmission, Scheduler, SubmissionPlan
from hpc_train.scheduler.dependencies import check_dependency
from hpc_train.scheduler.sacct import query_states
from hpc_train.scheduler.test_only import partitions, partitions_hint, test_only
from hpc_train.spec import JobSpec
from hpc_train.status import JobStatus, from_slurm

_UNREACHABLE = ("Unable to contact slurm controller", "Connection refused", "Zero Bytes were transmitted",
                "Socket timed out", "slurm_load_partitions", "Invalid user for SlurmUser")
_RUN_DIR_VAR = "HPC_TRAIN_RUN_DIR"
NO_CONTROLLER_HINT = ("is slurmctld running, and does SLURM_CONF name the right cluster? (`scontrol ping`); "
                       "slurm/start.sh starts the local test cluster; --executor local runs on this machine")
_NO_CLIENT_HINT = "submit from a SLURM login node (or put SLURM's commands on PATH), or use --executor local"


def sbatch_hint(result: CommandResult) -> str | None:
    """A hint for common sbatch failures: a bad partition lists the ones `sinfo` knows."""
    text = result.stderr + result.stdout
    if "invalid partition" in text.lower():
        return partitions_hint(partitions())
    if "invalid account" in text.lower():
        return "check resources.account; `sacctmgr show assoc user=$USER` lists yours"
    return None


def is_unreachable(said: str) -> bool:
    """True when a SLURM client's message says the controller did not answer."""
    return any(marker in said for marker in _UNREACHABLE)


def run_slurm(argv: list[str], *, timeout: float = 60.0, retries: int = 2) -> CommandResult:
    """run_command for SLURM clients: an unreachable controller becomes SchedulerUnavailable (exit 2)."""
    _require_client(argv[0])
    try:
        return run_command(argv, timeout=timeout, retries=retries,
                           retry_on=lambda r: any(m in r.stderr for m in _UNREACHABLE[1:4]), hint=sbatch_hint)
    except CommandError as exc:
        if is_unreachable(exc.stderr):
            raise SchedulerUnavailable(
                f"cannot reach the SLURM controller: `{' '.join(argv)}` said: {exc.stderr}\n"
                f"HINT: {NO_CONTROLLER_HINT}"
            ) from None
        raise


def _require_client(program: str) -> None:
    if shutil.which(program) is None:
        raise SchedulerUnavailable(
            f"`{program}` not found on PATH: this machine has no SLURM client commands\nHINT: {_NO_CLIENT_HINT}")


def ping_controller() -> str | None:
    """None when `scontrol ping` finds slurmctld UP, else what it said. One attempt, so it answers at once."""
    _require_client("scontrol")
    try:
        result = run_command(["scontrol", "ping"], timeout=10, check=False)
    except CommandError as exc:  # timed out
        return str(exc)
    if " is UP" in result.stdout:
        return None
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip() and line[0] != "*"]
    return "; ".join(said) or f"exit {result.returncode}"


def check_controller() -> None:
    """Fail fast when sbatch is missing or slurmctld does not answer (sbatch retries ~MessageTimeout)."""
    _require_client("sbatch")
    said = ping_controller()
    if said is not None:
        raise SchedulerUnavailable(f"cannot reach the SLURM controller: `scontrol ping` said: {said}\n"
                                   f"HINT: {NO_CONTROLLER_HINT}")


@functools.lru_cache(maxsize=1)
def max_array_size() -> int:
    """MaxArraySize from `scontrol show config`: an array may hold indices 0..MaxArraySize-1."""
    text = run_slurm(["scontrol", "show", "config"], timeout=30).stdout
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize":
            return int(value.strip())
    return 1001


class _Executor(submitit.SlurmExecutor):
    """submitit's SlurmExecutor whose sbatch call goes through run_slurm (timeout, retries, hints)."""

    @classmethod
    def affinity(cls) -> int:
        # submitit refuses to build an executor without `srun` on PATH; a dry run must work anywhere,
        # and a real submission fails in run_slurm with a clear message instead.
        return 2

    def _internal_process_submissions(
            self, delayed_submissions: list[submitit_utils.DelayedSubmission]) -> list[submitit.Job[Any]]:
        """submitit's array submission, but through this class: submitit's own builds a plain
        SlurmExecutor, whose sbatch bypasses run_slurm and whose python ignores `python=`."""
        if len(delayed_submissions) == 1:
            return super()._internal_process_submissions(delayed_submissions)
        folder = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        pickle_paths = []
        for delayed in delayed_submissions:
            pickle_path = folder / f"{uuid.uuid4().hex}.pkl"
            delayed.set_timeout(self.parameters.get("time", 5), self.max_num_timeout)
            delayed.dump(pickle_path)
            pickle_paths.append(pickle_path)
        array = type(self)(self.folder, self.max_num_timeout, python=self.python)
        array.update_parameters(**self.parameters)
        array.parameters["map_count"] = len(delayed_submissions)
        first = array._submit_command(self._submitit_command_str)
        tasks = list(range(first.num_tasks))
        jobs: list[submitit.Job[Any]] = [
            self.job_class(folder=self.folder, job_id=f"{first.job_id}_{index}", tasks=tasks)
            for index in range(len(delayed_submissions))]
        for job, pickle_path in zip(jobs, pickle_paths):
            job.paths.move_temporary_file(pickle_path, "submitted_pickle")
        return jobs

    def _submit_command(self, command: str) -> submitit.Job[Any]:
        folder = submitit_utils.JobPaths.get_first_id_independent_folder(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex
        path = folder / f".submission_file_{uid}.sh"
        path.write_text(self._make_submission_file_text(command, uid))
        output = run_slurm(["sbatch", "--parsable", str(path)], retries=0).stdout
        job_id = output.strip().split(";")[0]
        job: submitit.Job[Any] = self.job_class(folder=self.folder, job_id=job_id, tasks=list(range(self._num_tasks())))
        job.paths.move_temporary_file(path, "submission_file", keep_as_symlink=True)
        self._write_job_id(job.job_id, uid)
        return job


def array_task_entry(spec_path: str, run_dir: str) -> int:
    """What each task of a submitit array runs: the worker, with this task's run directory exported."""
    from hpc_train.runtime.worker import submitit_entry

    os.environ[_RUN_DIR_VAR] = run_dir
    return submitit_entry(spec_path, run_dir)


def submitit_parameters(spec: JobSpec, context: RenderContext, *, array_parallelism: int | None = None) -> dict[str, Any]:
    """SlurmExecutor parameters for a spec: a pure function (what `--dry-run` prints)."""
    r = spec.resources
    extra: dict[str, Any] = {"open-mode": "append"}
    if spec.preemption.requeue:
        # One mechanism: hpc-train's PreemptionGuard handles the signal (see README, Preemption).
        extra["signal"] = f"{spec.preemption.signal}@{spec.preemption.grace_seconds}"
        extra["requeue"] = True
    if context.dependency:
        extra["dependency"] = context.dependency
    for option in r.extra_sbatch:
        key, _, value = option[2:].partition("=")
        extra[key.replace("-", "_")] = value or True
    params: dict[str, Any] = {
        "job_name": spec.name, "nodes": r.nodes, "ntasks_per_node": r.tasks_per_node,
        "cpus_per_task": r.cpus_per_task, "mem": f"{r.memory}M", "time": max(1, math.ceil(r.time / 60)),
        "signal_delay_s": spec.preemption.grace_seconds, "setup": render_setup(spec, context).splitlines(),
        "srun_args": ["--mpi=pmix", "--kill-on-bad-exit=1"], "additional_parameters": extra,
    }
    if r.gpus_per_node:
        params["gpus_per_node"] = r.gpus_per_node
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(r, key):
            params[key] = getattr(r, key)
    if array_parallelism is not None:
        params["array_parallelism"] = array_parallelism
    return params


def submitit_python(spec: JobSpec, context: RenderContext) -> str:
    """The python command submitit runs: through `apptainer exec` when the spec has a container."""
    import shlex

    launcher = container_launcher(spec)
    return shlex.join([*launcher, "python"]) if launcher else context.python


class SlurmScheduler(Scheduler):
    """SLURM through submitit's SlurmExecutor; status from one batched sacct call."""

    name = "slurm"

    def plan(self, spec: JobSpec, context: RenderContext, *, folder: Path | None = None) -> SubmissionPlan:
        folder = folder or Path(context.run_dir) / "submitit"
        params = submitit_parameters(spec, context)
        executor = _Executor(folder=folder, python=submitit_python(spec, context))
        executor.update_parameters(**params)
        script = executor._make_submission_file_text(executor._submitit_command_str, "dry-run")
        return SubmissionPlan(executor=self.name, spec=spec, run_dir=Path(context.run_dir), context=context,
                              parameters=params, script=script,
                              command=[context.python, "-m", "hpc_train.runtime.worker", "--spec",
                                       context.spec_path, "--run-dir", context.run_dir])

    def check(self, plan: SubmissionPlan) -> None:
        """The controller answers, and `sbatch --test-only` accepts the script (partition, GPUs, limits)."""
        check_controller()
        if plan.context.dependency:
            check_dependency(plan.context.dependency)
        if plan.script is not None:
            test_only(plan.spec, plan.script)

    def _executor(self, plan: SubmissionPlan, folder: Path, **override: Any) -> _Executor:
        executor = _Executor(folder=folder, python=submitit_python(plan.spec, plan.context))
        executor.update_parameters(**{**plan.parameters, **override})
        return executor

    def submit(self, plan: SubmissionPlan) -> str:
        check_controller()  # before importing the worker (torch): a refusal should come at once
        from hpc_train.runtime.worker import submitit_entry

        executor = self._executor(plan, plan.run_dir / "submitit")
        job = executor.submit(submitit_entry, plan.context.spec_path, plan.context.run_dir)
        return str(job.job_id)

    def submit_array(self, plans: Sequence[SubmissionPlan], parallel: int | None = None,
                     folder: Path | None = None) -> list[str]:
        """One `--array=0-N%P` submission per MaxArraySize chunk; ids come back as 'JOB_TASK'.

        The tasks share the first plan's resources and one submitit folder (default: next to the
        first run directory); each run directory gets a `submitit` link to it, where its logs are.
        """
        if not plans:
            return []
        check_controller()
        folder = (folder or plans[0].run_dir.parent / "submitit").absolute()
        chunk = max(1, max_array_size()) if len(plans) > 1 else 1
        # the set-up exports the first task's run directory; each task sets its own (array_task_entry)
        setup = [line for line in plans[0].parameters.get("setup", [])
                 if not line.startswith(f"export {_RUN_DIR_VAR}=")]
        ids: list[str] = []
        try:
            for start in range(0, len(plans), chunk):
                part = plans[start:start + chunk]
                executor = self._executor(part[0], folder, setup=setup, array_parallelism=parallel or len(part))
                with executor.batch():
                    jobs = [executor.submit(array_task_entry, p.context.spec_path, p.context.run_dir)
                            for p in part]
                ids += [str(job.job_id) for job in jobs]
        except BaseException as exc:
            if ids:  # earlier chunks were accepted: the caller keeps them
                _link_folder(plans[:len(ids)], folder)
                raise PartialSubmission(ids, exc) from exc
            raise
        _link_folder(plans, folder)
        return ids

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        return slurm_statuses(records)

    def cancel(self, record: JobRecord) -> None:
        self.cancel_many([record])

    def cancel_many(self, records: Sequence[JobRecord]) -> None:
        """One scancel for all of them (a 1000-task batch is one command, not 1000)."""
        ids = [record.scheduler_id for record in records if record.scheduler_id]
        if ids:
            run_slurm(["scancel", *ids])


def _link_folder(plans: Sequence[SubmissionPlan], folder: Path) -> None:
    """Give each run directory a `submitit` link to the array's shared folder, where its logs are."""
    for plan in plans:
        link = plan.run_dir / "submitit"
        if not link.exists() and not link.is_symlink():
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            link.symlink_to(folder, target_is_directory=True)


class SbatchScheduler(SlurmScheduler):
    """The rendered sbatch script submitted with `sbatch --parsable`: what a careful person does by hand."""

    name = "sbatch"

    def plan(self, spec: JobSpec, context: RenderContext, *, folder: Path | None = None) -> SubmissionPlan:
        script_path = Path(context.run_dir) / context.script_name
        return SubmissionPlan(executor=self.name, spec=spec, run_dir=Path(context.run_dir), context=context,
                              script=render_sbatch(spec, context), argv=["sbatch", "--parsable", str(script_path)])

    def submit(self, plan: SubmissionPlan) -> str:
        assert plan.script is not None
        check_controller()
        script_path = Path(plan.argv[-1])
        script_path.parent.mkdir(parents=True, exist_ok=True)
        (plan.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        script_path.write_text(plan.script)
        return run_slurm(plan.argv, retries=0).stdout.strip().split(";")[0]

    def submit_array(self, plans: Sequence[SubmissionPlan], parallel: int | None = None,
                     folder: Path | None = None) -> list[str]:
        return Scheduler.submit_array(self, plans, parallel)  # one sbatch each; PartialSubmission part-way


# A run that ended so may not be the job's end: SLURM requeues a --requeue job after a node failure, a
# preemption or a failed boot and runs it again under the same id.
_MAY_RUN_AGAIN = (JobStatus.FAILED, JobStatus.PREEMPTED)


def slurm_statuses(records: Sequence[JobRecord]) -> dict[str, JobStatus]:
    """Status of many SLURM jobs from ONE sacct call; jobs not yet in accounting count as pending.

    sacct reports the last run; when that run ended in failure, slurmctld (one squeue call, asked only
    then) says whether the job will run again, so a requeued job is never shown as ended.
    """
    by_sched = {r.scheduler_id: r for r in records if r.scheduler_id}
    states = query_states(by_sched)
    result = {record.id: states.get(sched_id, JobStatus.PENDING) for sched_id, record in by_sched.items()}
    ended_badly = [sched_id for sched_id, record in by_sched.items() if result[record.id] in _MAY_RUN_AGAIN]
    if ended_badly:
        held = queue_states()
        for sched_id in ended_badly:
            if sched_id in held:  # waiting again after its run ended: requeued
                result[by_sched[sched_id].id] = JobStatus.REQUEUED if held[sched_id] == JobStatus.PENDING \
                    else held[sched_id]
    for record in by_sched.values():
        # A job that checkpointed on preemption but was not requeued (max_requeues) exits non-zero on
        # purpose; its own status.json says what happened.
        if result[record.id] == JobStatus.FAILED and _own_status(record) == JobStatus.PREEMPTED.value:
            result[record.id] = JobStatus.PREEMPTED
    return result


def queue_states() -> dict[str, JobStatus]:
    """The jobs of this user that slurmctld holds and has not ended (pending, running, requeued), by id
    ('123', '123_4'); ended jobs it still lists for a while are left out."""
    user = os.environ.get("USER") or getpass.getuser()
    out = run_slurm(["squeue", "-h", "-r", "-u", user, "-o", "%i|%T"], timeout=30).stdout
    states: dict[str, JobStatus] = {}
    for line in out.splitlines():
        job_id, _, state = line.partition("|")
        status = from_slurm(state)
        if not status.is_terminal and status != JobStatus.UNKNOWN:
            states[job_id.strip()] = status
    return states


def _own_status(record: JobRecord) -> str | None:
    from hpc_train.rundir import RunDirectory

    own = RunDirectory(record.run_dir).status_record() or {}
    return own.get("status")
