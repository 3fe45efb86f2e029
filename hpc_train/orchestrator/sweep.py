"""Submitting a hyperparameter search: one sweep directory with an Optuna journal, and `parallel`
workers (one SLURM array, or local processes) that share it. Resubmitting continues the same journal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hpc_train.data import load_dataset
from hpc_train.errors import CommandError, UserError
from hpc_train.jobs import get_scheduler, prepare_job, refresh
from hpc_train.orchestrator.search import (
    STUDY_NAME,
    SearchSettings,
    check_folds,
    create_study,
    open_study,
    read_settings,
    worker_dir,
    write_settings,
)
from hpc_train.orchestrator.sweep_worker import submitit_entry
from hpc_train.orchestrator.trials import close_interrupted
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.render import RenderContext
from hpc_train.rundir import RunDirectory
from hpc_train.spec import JobSpec, dump_spec, load_spec
from hpc_train.status import JobStatus

# A worker slot still shows as alive this long after a cancel before resubmitting gives up.
GONE_TIMEOUT_S = 60.0


def submit_sweep(spec: JobSpec, settings: SearchSettings, *, executor: str, registry: JobRegistry,
                 base_dir: Path, where: str = "hyperparameter_search", cv_key: str = "cv") -> JobRecord:
    """Create the sweep directory and journal, start the workers, register the sweep and its workers."""
    scheduler = get_scheduler(executor)
    prepared = prepare_job(spec, base_dir=base_dir, write=False)
    data = load_dataset(prepared.spec.data, prepared.spec.training.seed, base_dir=base_dir)
    labels = [data.classes[i] for part in (data.y_train, data.y_val) for i in part.tolist()]
    check_folds(settings.cv, labels, where=where, key=cv_key)
    sweep_dir = prepared.run_dir.path
    try:
        prepared.run_dir.create()
        prepared.run_dir.spec_path.write_text(dump_spec(prepared.spec))
        write_settings(sweep_dir, settings)
        create_study(sweep_dir, settings)
        ids = launch_workers(scheduler.name, prepared.spec, sweep_dir, list(range(settings.parallel)))
    except BaseException:
        shutil.rmtree(sweep_dir, ignore_errors=True)  # nothing runs: leave no trace
        raise
    parent = JobRecord(id=prepared.id, name=spec.name, kind="sweep", executor=scheduler.name,
                       scheduler_id=ids[0].split("_")[0] if scheduler.name != "local" else None,
                       run_dir=str(sweep_dir), status=JobStatus.PENDING,
                       extra={"metric": settings.metric, "direction": settings.direction, "model": settings.model,
                              "strategy": settings.strategy, "budget": settings.budget, "parallel": settings.parallel,
                              "study_name": STUDY_NAME})
    registry.add(parent)
    now = time.time()
    for worker, scheduler_id in enumerate(ids):
        registry.add(JobRecord(id=JobRegistry.new_id(), name=f"{spec.name}-w{worker}", kind="job",
                               executor=scheduler.name, scheduler_id=scheduler_id,
                               run_dir=str(worker_dir(sweep_dir, worker)), status=JobStatus.PENDING,
                               parent=parent.id, created=now + worker * 1e-3, extra={"worker": worker}))
    return parent


def launch_workers(executor: str, spec: JobSpec, sweep_dir: Path, workers: Sequence[int]) -> list[str]:
    """Start the given worker slots: one SLURM array (one sbatch) or one local process each."""
    for worker in workers:
        RunDirectory(worker_dir(sweep_dir, worker)).create().write_status(JobStatus.PENDING, error=None,
                                                                          traceback=None)
    if executor == "local":
        return _launch_local(spec, sweep_dir, workers)
    return _launch_slurm(spec, sweep_dir, workers)


def _launch_slurm(spec: JobSpec, sweep_dir: Path, workers: Sequence[int]) -> list[str]:
    from hpc_train.scheduler.slurm import _Executor, check_controller, submitit_parameters, submitit_python

    check_controller()
    context = RenderContext(spec_path=str(sweep_dir / "spec.yaml"), run_dir=str(sweep_dir), python=sys.executable)
    params = submitit_parameters(spec, context, array_parallelism=len(workers))
    executor = _Executor(folder=sweep_dir / "submitit", python=submitit_python(spec, context))
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(submitit_entry, str(sweep_dir), worker) for worker in workers]
    for worker in workers:  # each worker's folder links to the array's logs (`hpc-train logs ID --task K`)
        link = worker_dir(sweep_dir, worker) / "submitit"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(sweep_dir / "submitit", target_is_directory=True)
    return [str(job.job_id) for job in jobs]


def _launch_local(spec: JobSpec, sweep_dir: Path, workers: Sequence[int]) -> list[str]:
    """One background process per worker (its pid is the scheduler id, as for LocalScheduler's jobs);
    output goes to the worker's logs/ folder. A new session: Ctrl-C in this shell does not stop them."""
    threads = spec.training.threads or spec.resources.cpus_per_task
    env = {**os.environ, **spec.resources.env, "OMP_NUM_THREADS": str(threads), "HPC_TRAIN_RUN_DIR": str(sweep_dir)}
    ids = []
    for worker in workers:
        logs = RunDirectory(worker_dir(sweep_dir, worker)).logs
        with (logs / "worker.out").open("ab") as out, (logs / "worker.err").open("ab") as err:
            process = subprocess.Popen(worker_command(sweep_dir, worker), stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=err, env=env, start_new_session=True)
        ids.append(str(process.pid))
    return ids


def worker_command(sweep_dir: Path, worker: int) -> list[str]:
    """The argv of one local worker."""
    return [sys.executable, "-m", "hpc_train.orchestrator.sweep_worker", "--sweep-dir", str(sweep_dir),
            "--worker", str(worker)]


def resubmit_sweep(registry: JobRegistry, record: JobRecord) -> JobRecord:
    """Start the workers of a cancelled or failed sweep again on the same journal.

    Finished trials stay finished; trials the old workers left running are marked interrupted
    (and their grid points queued again); the budget counts only what is left.
    """
    workers = refresh(registry, registry.children(record.id))
    alive = [w for w in workers if not w.status.is_terminal]
    if alive:
        raise UserError(f"sweep {record.id} still has {len(alive)} worker(s) pending or running; "
                        f"cancel it first (`hpc-train cancel {record.id}`)")
    _wait_gone(workers)
    sweep_dir = Path(record.run_dir)
    settings = read_settings(sweep_dir)
    settings.generation += 1
    write_settings(sweep_dir, settings)
    stale_lock = sweep_dir / "claim.lock"
    stale_lock.unlink(missing_ok=True)  # every old worker is gone: nobody holds it
    close_interrupted(open_study(sweep_dir, settings))
    spec = load_spec(RunDirectory(sweep_dir).spec_path)
    slots = sorted(int(w.extra.get("worker", n)) for n, w in enumerate(workers))
    ids = launch_workers(record.executor, spec, sweep_dir, slots)
    by_slot = {int(w.extra.get("worker", n)): w for n, w in enumerate(workers)}
    for slot, scheduler_id in zip(slots, ids):
        old = by_slot[slot]
        history = [*old.extra.get("previous", []), old.scheduler_id]
        registry.update(old.id, status=JobStatus.PENDING, scheduler_id=scheduler_id, extra={"previous": history})
    registry.update(record.id, status=JobStatus.PENDING, extra={"generation": settings.generation})
    return registry.get(record.id)


def _wait_gone(workers: Sequence[JobRecord]) -> None:
    """A cancelled worker may run a few seconds more (SLURM's KillWait, a local process exiting)."""
    deadline = time.monotonic() + GONE_TIMEOUT_S
    for worker in workers:
        while not _gone(worker):
            if time.monotonic() > deadline:
                raise UserError(f"worker {worker.id} ({worker.executor} {worker.scheduler_id}) is still running "
                                f"{GONE_TIMEOUT_S:.0f}s after it ended; try again shortly")
            time.sleep(0.5)


def _gone(worker: JobRecord) -> bool:
    if not worker.scheduler_id:
        return True
    if worker.executor == "local":
        return not _process_alive(int(worker.scheduler_id))
    from hpc_train.scheduler.slurm import run_slurm

    try:
        listed = run_slurm(["squeue", "-h", "-r", "-o", "%i", "-j", worker.scheduler_id], timeout=30).stdout.split()
    except CommandError as exc:
        if "Invalid job id" in exc.stderr:
            return True
        raise
    return worker.scheduler_id not in listed


def _process_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
