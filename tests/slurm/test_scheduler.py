"""The SLURM scheduler layer on the real local cluster: submitit and sbatch jobs, arrays with a
parallelism limit, afterok chains, cancel, batched status, logs and a two-node job.

Jobs are tiny (a 10-tree random forest on digits, ~5 s) and each test has its own folders: job ids
restart at 1 after a fresh cluster state, so a folder is never shared between two clusters' jobs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support import PYTHON, REPO, SlurmCluster

from hpc_train.cli.main import main
from hpc_train.commands import CALL_COUNTS
from hpc_train.jobs import prepare_job, refresh
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.scheduler import slurm
from hpc_train.scheduler.base import SubmissionPlan
from hpc_train.scheduler.sacct import query_states
from hpc_train.scheduler.slurm import SlurmScheduler, _Executor, submitit_parameters
from hpc_train.spec import load_spec
from hpc_train.status import JobStatus

pytestmark = pytest.mark.slurm

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
QUICKSTART = REPO / "configs" / "quickstart.yaml"
# One CPU and little memory per task, so that four tasks fit the two 2-CPU nodes and an array's
# %2 (not the nodes) is what limits how many run at once.
TINY = ["model.hyperparameters.n_estimators=10", "resources.cpus_per_task=1", "resources.memory=500MB",
        "resources.time=00:05:00"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without SLURM_* job variables (SLURM_CONF kept), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    return {**env, **extra}


FinishedJobs = tuple[Path, dict[str, str]]  # registry home, {executor: hpc-train job id}
FinishedArray = tuple[list[SubmissionPlan], list[str], int]  # plans, task ids, sbatch calls


def slurm_command(*argv: str, cwd: Path | None = None) -> str:
    """Run a SLURM client command directly (not through hpc-train); its stdout."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, env=clean_env(), check=True,
                          cwd=cwd).stdout


def sets(overrides: Sequence[str]) -> list[str]:
    return [word for item in overrides for word in ("--set", item)]


def hpc_train(home: Path, *args: str | Path, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`hpc-train --home HOME ARGS` as a user types it."""
    return subprocess.run([HPC_TRAIN, "--home", str(home), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or clean_env(), check=False)


def submit(home: Path, out: Path, *args: str, overrides: Sequence[str] = TINY) -> str:
    """Submit the quickstart spec; returns the hpc-train job id (the last word printed)."""
    proc = hpc_train(home, "submit", QUICKSTART, *sets([*overrides, f"output_dir={out}"]), *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


def status_json(home: Path, job_id: str) -> dict[str, Any]:
    proc = hpc_train(home, "status", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def sacct(job_id: str, fields: str = "JobID,State") -> list[dict[str, str]]:
    header, *rows = slurm_command("sacct", "-X", "-P", "-o", fields, "-j", job_id).splitlines()
    return [dict(zip(header.split("|"), row.split("|"))) for row in rows]


def sacct_state(job_id: str) -> str:
    rows = [r for r in sacct(job_id) if r["JobID"] == job_id]
    return rows[0]["State"].split()[0] if rows else ""


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str] | str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(0.5)


def wait_in_sacct(sched_ids: Sequence[str], timeout: float) -> None:
    """Until sacct shows every job ended: quicker than `hpc-train wait`, whose polls back off to 15 s."""
    terminal = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
    wait_until(lambda: all(sacct_state(j) in terminal for j in sched_ids), timeout,
               lambda: f"jobs {list(sched_ids)} to end: {[sacct_state(j) for j in sched_ids]}")


def tiny_plans(run_dirs: Sequence[Path], overrides: Sequence[str] = TINY) -> list[SubmissionPlan]:
    """SubmissionPlans as `submit` makes them, one run directory each."""
    spec = load_spec(QUICKSTART, overrides)
    scheduler = SlurmScheduler()
    plans = []
    for run_dir in run_dirs:
        prepared = prepare_job(spec, base_dir=QUICKSTART.parent, run_dir=run_dir)
        plans.append(scheduler.plan(prepared.spec, prepared.context))
    return plans


def most_at_once(rows: Sequence[dict[str, str]]) -> int:
    """The largest number of [Start, End) intervals that overlap."""
    events = []
    for row in rows:
        events += [(datetime.fromisoformat(row["Start"]), 1), (datetime.fromisoformat(row["End"]), -1)]
    running = peak = 0
    for _, change in sorted(events):  # at equal times an end (-1) sorts before a start (+1)
        running += change
        peak = max(peak, running)
    return peak


# -- 1. submitit and plain sbatch jobs run to COMPLETED with correct results


@pytest.fixture(scope="module")
def finished_jobs(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> FinishedJobs:
    """One job through submitit and one through --sbatch, both waited for: (home, {executor: job id})."""
    home, out = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("runs")
    ids = {"slurm": submit(home, out, "--executor", "slurm"), "sbatch": submit(home, out, "--sbatch")}
    wait_in_sacct([status_json(home, job_id)["scheduler_id"] for job_id in ids.values()], 120)
    for job_id in ids.values():
        proc = hpc_train(home, "wait", job_id, "--timeout", "30")
        assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}{hpc_train(home, 'status', job_id).stdout}"
    return home, ids


@pytest.mark.timeout(200)
def test_submitit_and_sbatch_jobs_complete_with_results(finished_jobs: FinishedJobs) -> None:
    home, ids = finished_jobs
    for executor, job_id in ids.items():
        summary = status_json(home, job_id)
        assert (summary["executor"], summary["status"]) == (executor, "completed")
        assert sacct_state(summary["scheduler_id"]) == "COMPLETED"
        proc = hpc_train(home, "results", job_id, "--json")
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout)
        assert results["accuracy"] > 0.9 and results["n_val"] == 360


# -- 2. arrays: one sbatch call, at most %P tasks at once, split at MaxArraySize


@pytest.fixture(scope="module")
def finished_array(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> FinishedArray:
    """Six tasks submitted as one array with %2 and waited for: (plans, task ids, sbatch calls)."""
    root = tmp_path_factory.mktemp("array")
    plans = tiny_plans([root / f"task{i}" for i in range(6)])
    before = CALL_COUNTS.get("sbatch", 0)
    ids = SlurmScheduler().submit_array(plans, parallel=2)
    calls = CALL_COUNTS.get("sbatch", 0) - before
    try:
        wait_until(lambda: len(query_states(ids)) == 6 and all(s.is_terminal for s in query_states(ids).values()),
                   150, lambda: f"array tasks to end: {query_states(ids)}")
    except BaseException:
        slurm_command("scancel", ids[0].split("_")[0])
        raise
    return plans, ids, calls


@pytest.mark.timeout(200)
def test_array_is_one_sbatch_call_and_runs_two_at_a_time(finished_array: FinishedArray) -> None:
    plans, ids, sbatch_calls = finished_array
    assert sbatch_calls == 1
    array_id = ids[0].split("_")[0]
    assert ids == [f"{array_id}_{i}" for i in range(6)]
    assert set(query_states(ids).values()) == {JobStatus.COMPLETED}
    rows = sacct(array_id, "JobID,Start,End")
    assert sorted(r["JobID"] for r in rows) == sorted(ids)
    assert most_at_once(rows) <= 2, rows
    script = (plans[0].run_dir / "submitit" / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-5%2" in script
    assert "HPC_TRAIN_RUN_DIR=" not in script  # each task exports its own run directory, not the first's
    for plan in plans:  # each task trained into its own run directory
        results = json.loads((plan.run_dir / "results.json").read_text())
        assert results["accuracy"] > 0.9


@pytest.mark.timeout(60)
def test_array_larger_than_max_array_size_is_split(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "max_array_size", lambda: 4)
    plans = tiny_plans([tmp_path / f"task{i}" for i in range(6)])
    for plan in plans:  # really submitted, but held: nothing needs to run
        plan.parameters["additional_parameters"]["hold"] = True
    before = CALL_COUNTS.get("sbatch", 0)
    ids = SlurmScheduler().submit_array(plans, parallel=2)
    arrays = sorted({i.split("_")[0] for i in ids}, key=int)
    try:
        assert CALL_COUNTS.get("sbatch", 0) - before == 2 and len(arrays) == 2
        first, second = arrays
        assert ids == [f"{first}_{i}" for i in range(4)] + [f"{second}_{i}" for i in range(2)]
        queued = slurm_command("squeue", "-h", "-r", "-o", "%i", "-j", f"{first},{second}").split()
        assert sorted(queued) == sorted(ids)
    finally:
        slurm_command("scancel", *arrays)


# -- 3. an afterok chain whose first job fails


@pytest.mark.timeout(180)
def test_afterok_dependent_of_failed_job_is_cancelled(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "runs"
    # A CSV whose header and first rows pass the submit-time checks, with a bad value further down: the
    # job fails when it reads the whole file.
    rows = [f"{i % 7}.5,{i % 3}.25,{i % 2}" for i in range(40)]
    rows[30] = "oops,1.0,1"
    csv = tmp_path / "broken.csv"
    csv.write_text("f1,f2,label\n" + "\n".join(rows) + "\n")
    # The failing job waits behind a plain SLURM job that ends when the test says so: the dependent
    # below is then always submitted while the job it depends on has not yet failed.
    gate = slurm_command("sbatch", "--parsable", "-c", "1", "--mem", "50M", "-t", "5", "-o", "/dev/null",
                         "--wrap", "while [ ! -e release ]; do sleep 0.2; done", cwd=tmp_path).strip()
    first = submit(home, out, "--executor", "slurm", "--dependency", f"afterok:{gate}",
                   overrides=[*TINY, f"data.train_path={csv}"])
    first_sched = status_json(home, first)["scheduler_id"]
    # Named by its hpc-train id (a prefix of it, even): submit turns it into the SLURM id.
    second = submit(home, out, "--executor", "slurm", "--dependency", f"afterok:{first[:6]}")
    (tmp_path / "release").touch()

    wait_in_sacct([status_json(home, second)["scheduler_id"]], 120)
    proc = hpc_train(home, "wait", second, "--timeout", "30")
    assert proc.returncode == 1 and f"{second} cancelled" in proc.stdout, proc.stdout + proc.stderr
    assert status_json(home, second)["status"] == "cancelled"
    assert sacct_state(status_json(home, second)["scheduler_id"]) == "CANCELLED"

    failed = status_json(home, first)
    assert failed["status"] == "failed" and sacct_state(first_sched) == "FAILED"
    assert "'f1'" in failed["error"] and "oops" in failed["error"], failed["error"]
    assert failed["traceback"] and "Error" in failed["traceback"][-1]
    text = hpc_train(home, "status", first).stdout
    assert "failed" in text and failed["traceback"][-1] in text

    # Now that it has failed, a new afterok on it is refused at once: it could never start.
    def listed() -> list[str]:
        return [job["id"] for job in json.loads(hpc_train(home, "list", "--json").stdout)]

    before = listed()
    refused = hpc_train(home, "submit", QUICKSTART, *sets([*TINY, f"output_dir={out}"]),
                        "--executor", "slurm", "--dependency", f"afterok:{first}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"afterok:{first_sched} can never be met" in refused.stderr and "ended failed" in refused.stderr
    assert listed() == before  # nothing registered
    # ...while afternotok on it is exactly what it is for.
    third = submit(home, out, "--executor", "slurm", "--dependency", f"afternotok:{first}")
    assert hpc_train(home, "wait", third, "--timeout", "90", timeout=120).returncode == 0


# -- 4. cancel a running job


@pytest.mark.timeout(180)
def test_cancel_running_job(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "runs"
    slow = [*TINY, "model.type=gradient_boosting", "model.hyperparameters={n_estimators: 3000}"]  # minutes
    job_id = submit(home, out, "--executor", "slurm", overrides=slow)
    summary = status_json(home, job_id)
    own_status = Path(summary["run_dir"]) / "status.json"
    try:
        wait_until(lambda: own_status.exists() and json.loads(own_status.read_text())["status"] == "running",
                   120, "the job to start training")
        proc = hpc_train(home, "cancel", job_id)
        assert proc.returncode == 0, proc.stderr
        # The job would run for minutes: CANCELLED well before that is the cancel's doing.
        wait_until(lambda: sacct_state(summary["scheduler_id"]) == "CANCELLED", 60,
                   lambda: f"sacct CANCELLED (now {sacct_state(summary['scheduler_id'])!r})")
    finally:
        slurm_command("scancel", summary["scheduler_id"])
    assert status_json(home, job_id)["status"] == "cancelled"


# -- 5. status of 50 jobs from one sacct call


@pytest.mark.timeout(90)
def test_status_of_50_jobs_is_one_sacct_call(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    def sbatch(*args: str) -> str:
        out = slurm_command("sbatch", "--parsable", "-o", "/dev/null", *args, cwd=tmp_path)
        return out.strip().split(";")[0]

    # all held, so the test needs no free node: states change by scancel, not by running
    array = sbatch("--hold", "--array=0-39", "--wrap", "true")
    singles = [sbatch("--hold", "--wrap", "true") for _ in range(10)]
    registry = JobRegistry(tmp_path / "home")
    sched_ids = [f"{array}_{i}" for i in range(40)] + singles
    for n, sched_id in enumerate(sched_ids):  # plain sbatch and submitit jobs are both SLURM jobs
        registry.add(JobRecord(id=f"job{n:02d}", name="tiny", kind="job", executor=("slurm", "sbatch")[n % 2],
                               scheduler_id=sched_id, run_dir=str(tmp_path / f"job{n:02d}"),
                               status=JobStatus.PENDING))

    def refresh_all() -> list[JobRecord]:
        before = CALL_COUNTS.get("sacct", 0)
        records = refresh(registry, [registry.get(f"job{n:02d}") for n in range(50)])
        assert CALL_COUNTS.get("sacct", 0) - before == 1
        return records

    def cancelled() -> list[str]:
        return [r.scheduler_id or "" for r in refresh_all() if r.status == JobStatus.CANCELLED]

    try:
        assert {r.status for r in refresh_all()} == {JobStatus.PENDING}
        slurm_command("scancel", *singles[:5])
        wait_until(lambda: len(cancelled()) == 5, 30, "5 cancelled jobs in sacct")
        assert sorted(cancelled(), key=int) == singles[:5]
    finally:
        slurm_command("scancel", array, *singles)
    # a pending array is one sacct line, `ID_[0-39]`, that stands for all its tasks
    wait_until(lambda: len(cancelled()) == 50, 30, "all 50 cancelled in sacct")


@pytest.mark.timeout(60)
def test_cancel_batch_is_one_scancel_call(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = slurm_command("sbatch", "--parsable", "--hold", "--array=0-19", "-o", "/dev/null", "--wrap", "true",
                        cwd=tmp_path)
    array = out.strip().split(";")[0]
    home = tmp_path / "home"
    registry = JobRegistry(home)
    try:
        registry.add(JobRecord(id="batch20", name="batch", kind="batch", executor="slurm", scheduler_id=None,
                               run_dir=str(tmp_path), status=JobStatus.PENDING))
        for n in range(20):
            registry.add(JobRecord(id=f"batch20-{n:02d}", name="task", kind="job", executor="slurm",
                                   scheduler_id=f"{array}_{n}", run_dir=str(tmp_path), status=JobStatus.PENDING,
                                   parent="batch20"))
        before = CALL_COUNTS.get("scancel", 0)
        assert main(["--home", str(home), "cancel", "batch20"]) == 0
        assert CALL_COUNTS.get("scancel", 0) - before == 1
        assert {r.status for r in registry.children("batch20")} == {JobStatus.CANCELLED}
        assert registry.get("batch20").status == JobStatus.CANCELLED
        tasks = [f"{array}_{n}" for n in range(20)]
        wait_until(lambda: set(query_states(tasks).values()) == {JobStatus.CANCELLED} and len(query_states(tasks)) == 20,
                   30, lambda: f"sacct to show the tasks cancelled: {query_states(tasks)}")
    finally:
        slurm_command("scancel", array)


# -- 7. logs of a job and of an array task


@pytest.mark.timeout(200)
def test_logs_of_job_and_array_task(finished_jobs: FinishedJobs, finished_array: FinishedArray) -> None:
    home, ids = finished_jobs
    sched = status_json(home, ids["slurm"])["scheduler_id"]
    proc = hpc_train(home, "logs", ids["slurm"])
    assert proc.returncode == 0, proc.stderr
    assert f"{sched}_0_log.out <==" in proc.stdout and f"job_id={sched}," in proc.stdout
    proc = hpc_train(home, "logs", ids["sbatch"])
    sched = status_json(home, ids["sbatch"])["scheduler_id"]
    assert proc.returncode == 0, proc.stderr
    assert f"logs/quickstart-{sched}.out <==" in proc.stdout

    # register the array the way a batch does: a parent of kind "batch", its tasks as children
    plans, task_ids, _ = finished_array
    registry = JobRegistry(home)
    registry.add(JobRecord(id="batch6", name="batch", kind="batch", executor="none", scheduler_id=None,
                           run_dir=str(plans[0].run_dir.parent), status=JobStatus.PENDING))
    for n, (plan, task_id) in enumerate(zip(plans, task_ids)):
        registry.add(JobRecord(id=f"batch6-{n}", name="task", kind="job", executor="slurm",
                               scheduler_id=task_id, run_dir=str(plan.run_dir), status=JobStatus.PENDING,
                               parent="batch6", created=time.time() + n))
    proc = hpc_train(home, "logs", "batch6", "--task", "3")
    assert proc.returncode == 0, proc.stderr
    assert f"{task_ids[3]}_0_log.out <==" in proc.stdout and f"job_id={task_ids[3]}," in proc.stdout
    assert f"{task_ids[2]}_0_log" not in proc.stdout  # only this task's files
    proc = hpc_train(home, "logs", "batch6", "--task", "6")
    assert proc.returncode == 2 and "0..5" in proc.stderr


# -- 8. a two-node job through submitit


@pytest.mark.timeout(180)
def test_two_node_job_runs_on_both_nodes(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    spec = load_spec(QUICKSTART, TINY)
    # scikit-learn specs refuse several ranks, so the two-node resources are set after validation
    spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"nodes": 2})})
    prepared = prepare_job(spec, base_dir=QUICKSTART.parent, run_dir=tmp_path / "two", write=False)
    params = submitit_parameters(prepared.spec, prepared.context)
    assert (params["nodes"], params["ntasks_per_node"], params["mem"]) == (2, 1, "500M")
    executor = _Executor(folder=tmp_path / "two" / "submitit", python=PYTHON)
    executor.update_parameters(**params)
    job = executor.submit(socket.gethostname)
    try:
        wait_until(job.done, 150, lambda: f"two-node job {job.job_id} ({job.state})")
    finally:
        slurm_command("scancel", job.job_id)
    assert sorted(job.results()) == ["n1", "n2"]


def test_queue_states_lists_held_and_running_jobs_and_forgets_ended_ones(slurm_cluster: SlurmCluster,
                                                                         tmp_path: Path) -> None:
    """What slurm_statuses asks slurmctld when sacct says a run ended in failure (the real squeue)."""
    held = slurm_command("sbatch", "--parsable", "--hold", "-o", "/dev/null", "--wrap", "sleep 1",
                         cwd=tmp_path).strip().split(";")[0]
    done = slurm_command("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "true", cwd=tmp_path).strip().split(";")[0]
    try:
        wait_until(lambda: sacct_state(done) == "COMPLETED", 120, lambda: f"job {done} to complete")
        states = slurm.queue_states()
        assert states.get(held) == JobStatus.PENDING, states
        assert done not in states, states  # ended: whatever squeue still shows of it, it is not held
    finally:
        slurm_command("scancel", held)
    wait_until(lambda: held not in slurm.queue_states(), 60, f"job {held} to leave the queue")
