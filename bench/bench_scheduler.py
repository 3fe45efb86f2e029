"""Scheduler throughput on the local SLURM cluster: one array submission against one sbatch call
per job, and one sacct call for every task against one sacct call per job.

    .venv/bin/python bench/bench_scheduler.py [--tasks 1000] [--naive 100] [--status-array JOBID]

Submissions are the quickstart spec through SlurmScheduler, held (`--hold`) so nothing runs, and
cancelled afterwards. Status needs an array whose tasks have run (sacct shows a held or cancelled
array as one line, each task that ran as its own): it submits TASKS tasks of `true` and waits for
them (about 4 tasks/s on the 2-node test cluster, so ~4 min) unless --status-array names a finished
array with at least TASKS tasks. The naive ways are timed on --naive jobs and extrapolated to TASKS.
The cluster is started if it is down, and then stopped again.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpc_train.commands import CALL_COUNTS, run_command
from hpc_train.jobs import prepare_job, refresh
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.scheduler.base import SubmissionPlan
from hpc_train.scheduler.sacct import parse_sacct, query_states
from hpc_train.scheduler.slurm import SlurmScheduler
from hpc_train.spec import load_spec
from hpc_train.status import JobStatus

QUICKSTART = REPO / "configs" / "quickstart.yaml"
STATE = Path(os.environ.get("HPC_TRAIN_SLURM_STATE", REPO / ".slurm-state"))


def cluster_up() -> bool:
    status = subprocess.run([str(REPO / "slurm" / "status.sh")], capture_output=True, check=False)
    return status.returncode == 0


def use_cluster() -> bool:
    """Point SLURM_CONF at the local cluster, starting it if needed; True when this run started it."""
    started = False
    if not cluster_up():
        subprocess.run([str(REPO / "slurm" / "start.sh"), "--nodes", "2"], check=True, capture_output=True)
        started = True
    os.environ["SLURM_CONF"] = str(STATE / "slurm.conf")
    return started


def held_plans(root: Path, count: int) -> list[SubmissionPlan]:
    """Quickstart plans, one run directory each, held so that SLURM queues them but runs nothing."""
    spec = load_spec(QUICKSTART, ["resources.cpus_per_task=1", "resources.memory=100MB"])
    scheduler = SlurmScheduler()
    plans = []
    for i in range(count):
        prepared = prepare_job(spec, base_dir=QUICKSTART.parent, run_dir=root / f"task{i:04d}")
        plan = scheduler.plan(prepared.spec, prepared.context)
        plan.parameters["additional_parameters"]["hold"] = True
        plans.append(plan)
    return plans


def timed(what: Callable[[], object], program: str) -> tuple[float, int, object]:
    """(seconds, calls of `program`, result) of one call of what()."""
    calls = CALL_COUNTS.get(program, 0)
    t0 = time.perf_counter()
    result = what()
    return time.perf_counter() - t0, CALL_COUNTS.get(program, 0) - calls, result


def sacct_one(job_id: str) -> JobStatus | None:
    """The naive way: one sacct call for one job (or array task)."""
    out = run_command(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job_id], timeout=60).stdout
    return parse_sacct(out, [job_id]).get(job_id)


def run_true_array(tasks: int, folder: Path) -> str:
    """Submit TASKS tasks of `true` and wait until sacct shows them all ended; returns the array id."""
    out = run_command(["sbatch", "--parsable", f"--array=0-{tasks - 1}", "--mem=100M", "-o", "/dev/null",
                       "--wrap", "true"], timeout=60)
    array = out.stdout.strip().split(";")[0]
    ids = [f"{array}_{i}" for i in range(tasks)]
    deadline = time.monotonic() + 900
    while True:
        states = query_states(ids)
        ended = sum(s.is_terminal for s in states.values())
        print(f"  status array {array}: {ended}/{tasks} tasks ended", file=sys.stderr, end="\r")
        if ended == tasks:
            print(file=sys.stderr)
            return array
        if time.monotonic() > deadline:
            run_command(["scancel", array], check=False)
            raise SystemExit(f"array {array} did not finish in 900 s")
        time.sleep(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=100, help="jobs timed one by one, then extrapolated")
    parser.add_argument("--status-array", help="a finished array job id to read statuses of")
    args = parser.parse_args()
    started = use_cluster()
    scale = args.tasks / args.naive
    submitted: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
            root = Path(tmp)
            scheduler = SlurmScheduler()
            plans = held_plans(root / "array", args.tasks)
            array_s, array_calls, ids = timed(lambda: scheduler.submit_array(plans), "sbatch")
            assert isinstance(ids, list)
            submitted += sorted({i.split("_")[0] for i in ids})
            singles = held_plans(root / "single", args.naive)
            single_s, single_calls, single_ids = timed(lambda: [scheduler.submit(p) for p in singles],
                                                       "sbatch")
            assert isinstance(single_ids, list)
            submitted += single_ids
            run_command(["scancel", *submitted], timeout=120)
            submitted.clear()

            array = args.status_array or run_true_array(args.tasks, root)
            task_ids = [f"{array}_{i}" for i in range(args.tasks)]
            batch_s, batch_calls, states = timed(lambda: query_states(task_ids), "sacct")
            assert isinstance(states, dict) and len(states) == args.tasks, f"sacct knows {len(states)} tasks"
            per_job_s, per_job_calls, _ = timed(lambda: [sacct_one(t) for t in task_ids[:args.naive]],
                                                "sacct")
            registry = JobRegistry(root / "home")
            records = [registry.add(JobRecord(id=f"t{i:04d}", name="t", kind="job", executor="slurm",
                                              scheduler_id=t, run_dir=str(root), status=JobStatus.PENDING))
                       for i, t in enumerate(task_ids)]
            refresh_s, refresh_calls, _ = timed(lambda: refresh(registry, records), "sacct")
    finally:
        if submitted:
            run_command(["scancel", *submitted], timeout=120, check=False)
        if started:
            subprocess.run([str(REPO / "slurm" / "stop.sh")], check=False, capture_output=True)

    n, k = args.tasks, args.naive
    print(f"# scheduler benchmark, {datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
          f"local SLURM cluster (2 nodes)")
    print(f"submit {n} tasks as one array        {array_s:8.2f} s   sbatch calls: {array_calls}")
    print(f"submit {k} jobs one by one           {single_s:8.2f} s   sbatch calls: {single_calls}"
          f"  -> {n}: {single_s * scale:.1f} s (extrapolated)")
    print(f"  array is {single_s * scale / array_s:.0f}x faster")
    print(f"status of {n} tasks, one sacct call  {batch_s:8.3f} s   sacct calls: {batch_calls}")
    print(f"status of {k} tasks, one call each   {per_job_s:8.3f} s   sacct calls: {per_job_calls}"
          f"  -> {n}: {per_job_s * scale:.1f} s (extrapolated)")
    print(f"  one call is {per_job_s * scale / batch_s:.0f}x faster")
    print(f"refresh() of {n} registry records     {refresh_s:8.3f} s   sacct calls: {refresh_calls}"
          f"  (one sacct call and one registry transaction for all of them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
