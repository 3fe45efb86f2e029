"""Preemption on the real local SLURM cluster: USR1 -> checkpoint at the next step -> `scontrol requeue`
-> restart -> resume, bit for bit.

Every job is a 2-rank job on one node (tasks_per_node 2, one CPU and one thread per rank) training
configs/mlp.yaml's MLP, widened to 512x512 with batch 16 (45 steps an epoch per rank) so signals land
mid-training. Its final parameter digests must equal those of an uninterrupted run of the same spec and
seed; metrics.jsonl must hold each epoch exactly once; the preemption checkpoints must exist and at
least one must lie inside an epoch (the resumed run then continued at that batch).

- submitit (`--executor slurm`): `scancel --signal=USR1 JOB` signals the job steps (the ranks);
- rendered script (`--sbatch`): `scancel --signal=USR1 --batch JOB` signals the batch shell, whose trap
  forwards the signal to the srun step;
- the time limit: resources.time 1 minute. slurmctld sends the `--signal=USR1@G` warning at the first
  of its 30-second time-limit checks at or after T - G - 30 s (up to 30 s early, never late: measured
  here), so G=5 puts it 25-55 s into each run and the kill one check (30 s) or more later, while a
  larger G would let it land during start-up. The job trains for longer than 55 s (a sleeping twin of
  the MLP with the same arithmetic, tests/slurm/preemption_models.py) and is requeued until it is done;
- preemption.max_requeues 0: checkpoint, status "preempted", no requeue;
- sharded training (strategy fsdp): one checkpoint file per rank, the same bitwise resume, and a result
  equal to ddp's to float tolerance with half the state per rank.

The nine jobs are submitted together by one module fixture (the time-limit job, the longest, first)
and driven from threads, so the runs with and without preemption share the two nodes instead of
waiting for each other. Each test then asserts on its own jobs. The cluster runs two of them at a time,
so most wait in the queue first: no wait here counts queue time (tests/slurm/queue_watch.py), and a
failure says how long the job was queued, active and requeued.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from queue_watch import JobClock, QueueWatch, clean_env
from support import PYTHON, REPO, SlurmCluster, require

from hpc_train.checkpoint import HDF5CheckpointStore

pytestmark = pytest.mark.slurm

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
MLP_SPEC = REPO / "configs" / "mlp.yaml"
EPOCHS = 20
STEPS_PER_EPOCH = 45  # ceil(ceil(1437 training samples / 2 ranks) / batch 16)
TRAINING = [f"training.epochs={EPOCHS}", "training.early_stopping=null", "model.hidden_sizes=[512,512]",
            "data.batch_size=16", "resources.tasks_per_node=2", "resources.cpus_per_task=1",
            "resources.memory=2GB", "resources.time=00:10:00", "checkpoint.interval=5",
            "checkpoint.keep_last=100"]  # keep every checkpoint: the test reads the preemption ones
SLEEPY_MLP = ["model.type=preemption_models:sleepy_mlp",
              'model.hyperparameters={"hidden_sizes": [512, 512], "dropout": 0.1, "step_delay": 0.05}',
              f"resources.env.PYTHONPATH={Path(__file__).resolve().parent}"]
TIME_LIMIT = ["resources.time=00:01:00", "preemption.grace_seconds=5"]
# Four or more ranks share this machine's two cores: MPI ranks that busy-poll in their waits starve each
# other (Horovod jobs ran 3x slower); yielding keeps them close to DDP's speed. No effect on the numbers.
HOROVOD = ["distributed.strategy=horovod", "resources.env.OMPI_MCA_mpi_yield_when_idle='1'"]
FSDP = ["distributed.strategy=fsdp"]
# DDP's gradients by MPI_Allreduce (mpi4py); the ranks wait in MPI like Horovod's, so they yield too.
DDP_OVER_MPI = ["distributed.backend=mpi", "resources.env.OMPI_MCA_mpi_yield_when_idle='1'"]
# Budgets are active time only (tests/slurm/queue_watch.py): a job queued behind the module's other jobs
# spends nothing, and each epoch or requeue starts the budget again, so only a job that stops moving fails.
PROGRESS_S = 300  # of active time between two signs of progress (start-up under load included)
# No wall-clock limit on the tests themselves: how long the campaign takes follows from the machine's
# speed, and every wait inside it ends by itself (the budget above, or a cluster on which nothing runs).
CAMPAIGN_TIMEOUT_S = 0  # pytest-timeout: none
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


def command(argv: Sequence[str | Path], timeout: float = 60) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(), check=False)
    assert proc.returncode == 0, f"`{' '.join(map(str, argv))}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@dataclass
class Job:
    """One submitted job and what its driver saw."""

    label: str
    home: Path
    id: str
    scheduler_id: str
    run_dir: Path
    clock: JobClock
    signals_sent: int = 0
    notes: list[str] = field(default_factory=list)

    def hpc_train(self, *args: str) -> str:
        return command([HPC_TRAIN, "--home", self.home, *args])


class Campaign:
    """The module's jobs: submitted in order, then each driven by its own thread until it ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[str, Job] = {}
        self.stop = threading.Event()
        self.watch = QueueWatch()

    def submit(self, label: str, *args: str, overrides: Sequence[str] = ()) -> Job:
        home = self.root / label
        sets = [word for item in [*TRAINING, *overrides, f"output_dir={home / 'runs'}", f"name=pre-{label}"]
                for word in ("--set", item)]
        out = command([HPC_TRAIN, "--home", home, "submit", MLP_SPEC, *sets, *args])
        job_id = out.split()[-1]
        summary = json.loads(command([HPC_TRAIN, "--home", home, "status", job_id, "--json"]))
        job = Job(label, home, job_id, summary["scheduler_id"], Path(summary["run_dir"]),
                  self.watch.watch(summary["scheduler_id"]))
        self.jobs[label] = job
        return job

    def wait_until(self, job: Job, condition: Callable[[], bool], what: Callable[[], str],
                   poll_s: float = 0.2) -> None:
        """Until `condition()`; fails only after PROGRESS_S of active time with no epoch or requeue."""
        self.watch.wait([job.scheduler_id], condition, lambda: f"{job.label}: {what()}", PROGRESS_S,
                        progress=lambda: (epoch_lines(job), len(job.clock.history)), stop=self.stop,
                        poll_s=poll_s)

    def next_epoch_end(self, job: Job, lines: int) -> float:
        """time.monotonic() when metrics.jsonl grows past `lines` lines, seen within 10 ms."""
        self.wait_until(job, lambda: epoch_lines(job) > lines, lambda: f"an epoch after {lines}", poll_s=0.01)
        return time.monotonic()

    def preempt(self, job: Job, *, epochs_done: int, batch_shell: bool = False, mid_epoch: bool = False,
                requeued: bool = True) -> None:
        """Once the job runs and metrics.jsonl has `epochs_done` lines, send USR1 and wait for the requeue."""
        before = job.clock.requeues
        self.wait_until(job, lambda: job.clock.state == "RUNNING" and epoch_lines(job) >= epochs_done,
                        lambda: f"to run with {epochs_done} epochs done ({epoch_lines(job)} now)")
        if mid_epoch:  # aim at a third of an epoch (0.3-1 s here); scancel and forwarding add 0.1-0.3 s
            seen = epoch_lines(job)
            first_end = self.next_epoch_end(job, seen)
            second_end = self.next_epoch_end(job, seen + 1)
            time.sleep(max(0.0, (second_end - first_end) / 3 - (time.monotonic() - second_end)))
        command(["scancel", "--signal=USR1", *(["--batch"] if batch_shell else []), job.scheduler_id])
        job.signals_sent += 1
        job.notes.append(f"USR1 #{job.signals_sent} after {epoch_lines(job)} epochs")
        if requeued:
            self.wait_until(job, lambda: job.clock.requeues > before, lambda: "to be requeued")

    def finish(self, job: Job) -> Outcome:
        """Wait until the job's latest run has ended; gather what the tests check."""
        self.wait_until(job, lambda: bool(job.clock.history) and job.clock.history[-1] in TERMINAL
                        and job.clock.state == "", lambda: "to end")
        results_path = job.run_dir / "results.json"
        return Outcome(job=job, history=list(job.clock.history),
                       status=json.loads(job.hpc_train("status", job.id, "--json")),
                       run_status=json.loads((job.run_dir / "status.json").read_text()),
                       results=json.loads(job.hpc_train("results", job.id, "--json"))
                       if results_path.exists() else None,
                       epochs=[json.loads(line)["epoch"] for line in metrics(job)],
                       preemption_checkpoints=preemption_checkpoints(job.run_dir / "checkpoints"))


@dataclass
class Outcome:
    job: Job
    history: list[str]  # sacct -D states of each run, oldest first
    status: dict[str, Any]  # `hpc-train status --json`
    run_status: dict[str, Any]  # the run directory's status.json
    results: dict[str, Any] | None  # `hpc-train results --json`
    epochs: list[int]  # the epoch of each metrics.jsonl line
    preemption_checkpoints: list[dict[str, Any]]  # meta of each checkpoint written on preemption

    def describe(self) -> str:
        return (f"{self.job.label} (job {self.job.scheduler_id}): {self.job.clock.describe()}, status.json "
                f"{self.run_status.get('status')}, {self.job.notes}, logs in {self.job.run_dir}")


def metrics(job: Job) -> list[str]:
    path = job.run_dir / "metrics.jsonl"
    return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def epoch_lines(job: Job) -> int:
    return len(metrics(job))


def preemption_checkpoints(directory: Path) -> list[dict[str, Any]]:
    """Meta of rank 0's preemption checkpoints (sharded runs: its shard files, which every rank writes)."""
    store = HDF5CheckpointStore(directory, keep_last=None, sharded=any(directory.glob("*.rank0.h5")))
    metas = []
    for path in store.list():
        checkpoint = store.load(path)
        assert checkpoint is not None
        if checkpoint.meta.get("reason") == "preempted":
            metas.append({**checkpoint.meta, "step": checkpoint.step})
    return metas


def digests(outcome: Outcome) -> list[str]:
    assert outcome.results is not None, f"no results: {outcome.describe()}"
    return list(outcome.results["param_digests"])


# -- the jobs and their drivers ------------------------------------------------------------------


def drive_twice_preempted(campaign: Campaign, job: Job) -> Outcome:
    """USR1 just after epoch 1, then again part-way through an epoch a few epochs after the restart."""
    campaign.preempt(job, epochs_done=1)
    campaign.preempt(job, epochs_done=epoch_lines(job) + 3, mid_epoch=True)
    return campaign.finish(job)


def drive_batch_shell_preempted(campaign: Campaign, job: Job) -> Outcome:
    campaign.preempt(job, epochs_done=2, batch_shell=True, mid_epoch=True)
    return campaign.finish(job)


def drive_not_requeued(campaign: Campaign, job: Job) -> Outcome:
    campaign.preempt(job, epochs_done=1, mid_epoch=True, requeued=False)
    return campaign.finish(job)


def submit_and_drive(camp: Campaign, label: str, args: Sequence[str], overrides: Sequence[str],
                     drive: Callable[[Campaign, Job], Outcome]) -> Outcome:
    return drive(camp, camp.submit(label, *args, overrides=overrides))


@pytest.fixture(scope="module")
def campaign(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Future[Outcome]]]:
    """Submit every job of the module and drive each from its own thread; {label: its outcome}."""
    horovod = importlib.util.find_spec("horovod") is not None and importlib.util.find_spec("horovod.torch") is not None
    plan: list[tuple[str, list[str], list[str], Callable[[Campaign, Job], Outcome]]] = [
        ("ddp-time-limit", ["--executor", "slurm"], [*SLEEPY_MLP, *TIME_LIMIT], Campaign.finish),
        ("ddp-twice", ["--executor", "slurm"], [], drive_twice_preempted),
        ("ddp-reference", ["--executor", "slurm"], [], Campaign.finish),
        ("ddp-mpi-twice", ["--executor", "slurm"], DDP_OVER_MPI, drive_twice_preempted),
    ]
    if horovod:
        plan += [("horovod-twice", ["--executor", "slurm"], HOROVOD, drive_twice_preempted),
                 ("horovod-reference", ["--executor", "slurm"], HOROVOD, Campaign.finish)]
    plan += [("fsdp-twice", ["--executor", "slurm"], FSDP, drive_twice_preempted),
             ("fsdp-reference", ["--executor", "slurm"], FSDP, Campaign.finish),
             ("ddp-sbatch", ["--sbatch"], [], drive_batch_shell_preempted),
             ("ddp-no-requeue", ["--executor", "slurm"], ["preemption.max_requeues=0"], drive_not_requeued)]
    camp = Campaign(tmp_path_factory.mktemp("preemption"))
    pool = ThreadPoolExecutor(max_workers=len(plan), thread_name_prefix="preemption")
    futures: dict[str, Future[Outcome]] = {}
    try:
        first, *rest = plan  # the longest first: SLURM starts (and restarts) jobs in submission order
        job = camp.submit(first[0], *first[1], overrides=first[2])
        futures[first[0]] = pool.submit(first[3], camp, job)
        for label, args, overrides, drive in rest:  # submitting takes seconds: in the threads too
            futures[label] = pool.submit(submit_and_drive, camp, label, args, overrides, drive)
        yield futures
    finally:
        camp.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        camp.watch.close()
        for job in camp.jobs.values():  # leave nothing queued on the shared cluster
            subprocess.run(["scancel", job.scheduler_id], capture_output=True, timeout=30, env=clean_env(), check=False)


def outcome(campaign: dict[str, Future[Outcome]], label: str) -> Outcome:
    """The driver's result: it ends by itself (its waits fail when the job stops moving)."""
    return campaign[label].result()


def assert_resumed_exactly(result: Outcome, reference: Outcome, *, preemptions: int) -> None:
    """Requeued `preemptions` times (or more), completed, and bitwise equal to the uninterrupted run."""
    info = result.describe()
    assert result.history == ["REQUEUED"] * (len(result.history) - 1) + ["COMPLETED"], info
    assert len(result.history) - 1 >= preemptions, info
    assert result.status["status"] == "completed" and result.run_status["status"] == "completed", info
    assert result.results is not None and result.results["restarts"] == len(result.history) - 1, info
    assert result.run_status["preempted_by"] == "SIGUSR1", info
    assert result.status["last_fault"].startswith("checkpointed and requeued on SIGUSR1"), info
    # Each epoch reported once, in order: nothing was lost or trained twice across the restarts.
    assert result.epochs == list(range(1, EPOCHS + 1)), info
    checkpoints = result.preemption_checkpoints
    # One per preemption, unless one stopped on an epoch's last batch 5k: then the interval checkpoint of
    # the same step replaced it after the restart.
    assert 1 <= len(checkpoints) <= len(result.history) - 1, (checkpoints, info)
    assert all(c["world_size"] == 2 and c["num_threads"] == 1 for c in checkpoints), checkpoints
    # One preemption inside an epoch at least: the restart then had to continue at that very batch.
    assert any(0 < c["batch"] < STEPS_PER_EPOCH for c in checkpoints), checkpoints
    assert reference.history == ["COMPLETED"] and reference.results is not None, reference.describe()
    assert reference.results["restarts"] == 0
    ours, theirs = digests(result), digests(reference)
    assert len(ours) == 2 and len(set(ours)) == 1, ours  # the two ranks agree
    assert ours == theirs, f"resumed run differs from the uninterrupted one: {info}"


@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_submitit_ddp_job_preempted_twice_resumes_bitwise(campaign: dict[str, Future[Outcome]]) -> None:
    result = outcome(campaign, "ddp-twice")
    assert result.job.signals_sent == 2
    assert_resumed_exactly(result, outcome(campaign, "ddp-reference"), preemptions=2)
    first, second = result.preemption_checkpoints[:2]
    assert first["epoch"] >= 1 and second["step"] > first["step"] + 2 * STEPS_PER_EPOCH, (first, second)


@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_sbatch_ddp_job_preempted_through_the_batch_shell_resumes_bitwise(
        campaign: dict[str, Future[Outcome]]) -> None:
    result = outcome(campaign, "ddp-sbatch")
    assert result.job.signals_sent == 1
    assert_resumed_exactly(result, outcome(campaign, "ddp-reference"), preemptions=1)
    err = "".join(p.read_text() for p in (result.job.run_dir / "logs").glob("*.err"))
    assert "got USR1" in err and "forwarding to the training step" in err, err[-2000:]


@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_time_limit_warning_requeues_the_job_until_it_is_done(campaign: dict[str, Future[Outcome]]) -> None:
    """No signal from the test: every requeue comes from `--signal=USR1@5` before the 1-minute limit."""
    result = outcome(campaign, "ddp-time-limit")
    assert result.job.signals_sent == 0
    assert "TIMEOUT" not in result.history, result.describe()
    assert_resumed_exactly(result, outcome(campaign, "ddp-reference"), preemptions=1)


@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_ddp_job_over_mpi_preempted_twice_resumes_bitwise_equal_to_gloo(campaign: dict[str, Future[Outcome]]) -> None:
    # Two ranks: 1/2 folded into the loss is exact and a sum of two is symmetric, so DDP over MPI gives
    # the gloo reference bit for bit (tests/runtime/test_distributed.py checks it without SLURM).
    result = outcome(campaign, "ddp-mpi-twice")
    assert result.job.signals_sent == 2
    assert_resumed_exactly(result, outcome(campaign, "ddp-reference"), preemptions=2)
    assert result.results is not None and result.results["backend"] == "mpi"


@pytest.mark.horovod
@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_submitit_horovod_job_preempted_twice_resumes_bitwise(campaign: dict[str, Future[Outcome]]) -> None:
    require("horovod-twice" in campaign, "Horovod not installed: run scripts/install_horovod.sh")
    result = outcome(campaign, "horovod-twice")
    assert result.job.signals_sent == 2
    assert_resumed_exactly(result, outcome(campaign, "horovod-reference"), preemptions=2)
    assert result.results is not None and result.results["strategy"] == "horovod"


@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_submitit_fsdp_job_preempted_twice_resumes_bitwise_and_equals_ddp(
        campaign: dict[str, Future[Outcome]]) -> None:
    result, reference = outcome(campaign, "fsdp-twice"), outcome(campaign, "fsdp-reference")
    assert result.job.signals_sent == 2
    assert_resumed_exactly(result, reference, preemptions=2)
    assert result.results is not None and result.results["strategy"] == "model_parallel"
    for rank in (0, 1):  # every rank wrote its own shard of each checkpoint
        assert HDF5CheckpointStore(result.job.run_dir / "checkpoints", keep_last=None, rank=rank,
                                   sharded=True).steps()[-1] == EPOCHS * STEPS_PER_EPOCH
    ddp = outcome(campaign, "ddp-reference").results
    assert ddp is not None
    for sharded, whole in zip(result.results["state_bytes"], ddp["state_bytes"], strict=True):
        for kind in ("parameters", "optimizer"):
            assert 0.45 < sharded[kind] / whole[kind] < 0.55, (kind, sharded, whole)
    ours = HDF5CheckpointStore(Path(result.results["model_path"]).parent, prefix="model").load()
    theirs = HDF5CheckpointStore(Path(ddp["model_path"]).parent, prefix="model").load()
    assert ours is not None and theirs is not None
    for name, value in theirs.state["model"].items():
        torch.testing.assert_close(torch.as_tensor(ours.state["model"][name]), torch.as_tensor(value),
                                   rtol=1e-4, atol=1e-5, msg=name)
    assert result.results["accuracy"] == pytest.approx(ddp["accuracy"], abs=0.01)


@pytest.mark.timeout(CAMPAIGN_TIMEOUT_S)
def test_max_requeues_zero_checkpoints_and_ends_preempted(campaign: dict[str, Future[Outcome]]) -> None:
    result = outcome(campaign, "ddp-no-requeue")
    info = result.describe()
    assert "REQUEUED" not in result.history and len(result.history) == 1, info
    assert result.run_status["status"] == "preempted" and result.run_status["preempted_by"] == "SIGUSR1", info
    assert result.results is None, info
    [checkpoint] = result.preemption_checkpoints
    assert checkpoint["epoch"] >= 1 and checkpoint["world_size"] == 2, checkpoint
    # Not requeued means not done: SLURM must not count the job as completed (afterok dependents wait).
    assert result.history == ["FAILED"] and result.status["status"] != "completed", info
