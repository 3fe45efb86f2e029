"""TrainingMonitor on a real SLURM job: the worker samples its resources inside the allocation (memory
total = the job's --mem) and the monitor reads samples and metrics back while it runs and after."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from support import PYTHON, REPO, SlurmCluster

from hpc_train.jobs import wait_for
from hpc_train.monitor import TrainingMonitor
from hpc_train.registry import JobRegistry
from hpc_train.status import JobStatus

pytestmark = pytest.mark.slurm

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
QUICKSTART = REPO / "configs" / "quickstart.yaml"
MEMORY_MB = 1024
# a few seconds of fitting on a 2-CPU node: long enough to be watched while it runs
OVERRIDES = ["model.hyperparameters.n_estimators=2500", "resources.cpus_per_task=2",
             f"resources.memory={MEMORY_MB}MB", "resources.time=00:05:00"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without SLURM_* job variables (SLURM_CONF kept), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    return {**env, **extra}


def test_slurm_job_resources_and_metrics(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    sets = [w for item in [*OVERRIDES, f"output_dir={tmp_path / 'runs'}"] for w in ("--set", item)]
    proc = subprocess.run([HPC_TRAIN, "--home", str(home), "submit", str(QUICKSTART), "--executor", "slurm", *sets],
                          capture_output=True, text=True, timeout=120, check=False,
                          env=clean_env(HPC_TRAIN_RESOURCE_INTERVAL="0.5"))
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split()[-1]
    monitor = TrainingMonitor(home)

    deadline = time.monotonic() + 180
    usage = monitor.track_resource_usage(job_id)
    while usage["samples"] < 1:
        record = JobRegistry(home).get(job_id)
        assert not record.status.is_terminal or usage["samples"] >= 1, f"job ended without samples: {record}"
        assert time.monotonic() < deadline, "no resource sample within 180 s"
        time.sleep(0.5)
        usage = monitor.track_resource_usage(job_id)
    assert usage["ranks"] == 1 and usage["cpu"] >= 0
    assert usage["memory_total_bytes"] == MEMORY_MB * 1024 * 1024, "SLURM_MEM_PER_NODE not seen by the sampler"
    assert 0 < usage["memory_used_bytes"] <= usage["memory_total_bytes"]
    # sacct may still say pending for a moment after the job started writing
    assert monitor.track_metrics(job_id)["status"] in ("pending", "running", "completed")

    [record] = wait_for(JobRegistry(home), [job_id], timeout=240, poll=1.0, max_poll=3.0)
    assert record.status == JobStatus.COMPLETED, record
    metrics = monitor.track_metrics(job_id)
    assert metrics["status"] == "completed" and metrics["progress"] == 1.0 and metrics["val_accuracy"] > 0.8
    assert monitor.track_resource_usage(job_id)["samples"] >= 2
    once = subprocess.run([HPC_TRAIN, "--home", str(home), "monitor", job_id, "--once"], capture_output=True,
                          text=True, timeout=60, check=False, env=clean_env())
    assert once.returncode == 0 and "status: completed" in once.stdout.splitlines(), once.stderr
