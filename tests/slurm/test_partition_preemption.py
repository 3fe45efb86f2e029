"""Preemption as sites configure it (slurm/slurm.conf.in): a job of the higher-tier partition `urgent`
needs both nodes, so SLURM preempts the 2-node training jobs running in `debug`. It sends their tasks
SIGTERM (not the batch shell, and not the job's own --signal), kills them after GraceTime, and requeues
them itself. Both submission paths must checkpoint in the grace time, come back after the urgent job,
and end bitwise equal to the same training run uninterrupted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import REPO, SlurmCluster, require_mpirun, wait_until
from test_scheduler import clean_env, hpc_train, sets, status_json

pytestmark = [pytest.mark.slurm, pytest.mark.mpi]

SPEC = REPO / "configs" / "mlp.yaml"
# Two ranks (one per node, one CPU each: both jobs fit the two 2-CPU nodes side by side), a
# checkpoint every epoch, long enough that the urgent job arrives well inside the run.
TRAINING = ["training.epochs=40", "training.early_stopping=null", "model.hidden_sizes=[256,256]",
            "training.seed=5", "checkpoint.interval=1", "checkpoint.keep_last=2", "distributed.strategy=ddp",
            "distributed.backend=gloo"]
ON_SLURM = ["resources.nodes=2", "resources.tasks_per_node=1", "resources.cpus_per_task=1",
            "resources.memory=1GB", "resources.time=00:20:00", "resources.partition=debug"]
EXECUTORS = {"submitit": ["--executor", "slurm"], "sbatch": ["--sbatch"]}


def slurm(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, env=clean_env(),
                          check=True).stdout.strip()


def runs_of(scheduler_id: str) -> list[str]:
    """sacct -D: the state of each run of the job, oldest first."""
    out = slurm("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", scheduler_id)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(900)
def test_partition_priority_preemption_requeues_both_paths_bitwise(slurm_cluster: SlurmCluster,
                                                                    tmp_path: Path) -> None:
    require_mpirun()
    if slurm_cluster.nodes < 2:
        pytest.fail("needs the 2-node test cluster (slurm/start.sh --nodes 2)")
    home = tmp_path / "home"
    jobs: dict[str, str] = {}
    for label, how in EXECUTORS.items():
        proc = hpc_train(home, "submit", SPEC, *sets([*TRAINING, *ON_SLURM, f"output_dir={tmp_path / label}",
                                                      f"name=prio-{label}"]), *how)
        assert proc.returncode == 0, proc.stderr
        jobs[label] = proc.stdout.split()[-1]
    summaries = {label: status_json(home, job) for label, job in jobs.items()}

    # The reference: the same two ranks, uninterrupted, on this machine (mpirun) while SLURM works.
    reference: dict[str, object] = {}

    def train_reference() -> None:
        env = {**clean_env(), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        ran = subprocess.run([sys.executable, "-m", "hpc_train", "launch", "-np", "2", "--run-dir",
                              str(tmp_path / "reference"), str(SPEC), *sets(TRAINING)],
                             capture_output=True, text=True, timeout=800, env=env, check=False)
        results = tmp_path / "reference" / "results.json"
        reference.update(json.loads(results.read_text()) if ran.returncode == 0 and results.exists()
                         else {"error": ran.stdout[-2000:] + ran.stderr[-2000:]})

    helper = threading.Thread(target=train_reference)
    helper.start()
    try:
        def both_checkpointed() -> bool:
            return all(any((Path(s["run_dir"]) / "checkpoints").glob("ckpt-*.h5")) for s in summaries.values())
        wait_until(both_checkpointed, 400, "both jobs' first checkpoint", poll=0.5)
        # Whole nodes in the higher tier: SLURM must preempt both jobs to run it.
        urgent = slurm("sbatch", "--parsable", "-p", "urgent", "-N", "2", "--exclusive", "-t", "5", "-o", "/dev/null",
                       "--wrap", "sleep 2")
        for label, summary in summaries.items():
            sched = summary["scheduler_id"]
            wait_until(lambda sched=sched: len(runs_of(sched)) >= 2, 180, f"{label} to be preempted and requeued")
        for label, job in jobs.items():
            done = hpc_train(home, "wait", job, "--timeout", "500", timeout=560)
            assert done.returncode == 0, f"{label}: {done.stdout}{done.stderr}"
        assert slurm("sacct", "-X", "-n", "-P", "-o", "State", "-j", urgent) == "COMPLETED"
    finally:
        helper.join(timeout=820)

    assert "error" not in reference, reference.get("error")
    for label, job in jobs.items():
        results = json.loads(hpc_train(home, "results", job, "--json").stdout)
        own = json.loads((Path(summaries[label]["run_dir"]) / "status.json").read_text())
        states = runs_of(summaries[label]["scheduler_id"])
        info = f"{label}: runs {states}, status {own}"
        assert states[-1] == "COMPLETED" and results["restarts"] >= 1, info
        assert own.get("preempted_by") == "SIGTERM", info  # the tasks' SIGTERM, caught and checkpointed on
        assert results["resumed_from_step"], info
        assert results["param_digests"] == reference["param_digests"], f"differs from the uninterrupted run: {info}"
