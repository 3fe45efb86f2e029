"""One status and one cancel: `hpc-train status ID --json` and `TrainingOrchestrator.get_job_status(ID)`
give the same document for a job, a batch, a sweep and a pipeline (completed, failed and cancelled), and
`hpc-train cancel` stops the same tasks as `TrainingOrchestrator.cancel`. Local executor; the SLURM
variant of the cancel is in tests/slurm/test_orchestrator_slurm.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from orch_helpers import LAUNCHER_PREFIXES, write_scripts

from hpc_train.orchestrator import TrainingOrchestrator

HPC_TRAIN = Path(sys.executable).parent / "hpc-train"
QUICK = {"model": "random_forest", "data_path": "sklearn:iris", "params": {"n_estimators": 5, "n_jobs": 1}}
# Long enough to be cancelled while it runs (the test cancels it as soon as it has started).
SLOW = {"model": "neural_network", "data_path": "sklearn:digits", "epochs": 1000}


def cli_status(home: Path, job_id: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_PREFIXES)}
    proc = subprocess.run([str(HPC_TRAIN), "--home", str(home), "status", job_id, "--json"], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    document: dict[str, Any] = json.loads(proc.stdout)
    return document


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_PREFIXES)}
    return subprocess.run([str(HPC_TRAIN), "--home", str(home), *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def assert_same_document(orch: TrainingOrchestrator, job_id: str) -> dict[str, Any]:
    """The API's and the CLI's documents of an ended job, field by field (also every task's)."""
    api = orch.get_job_status(job_id)
    ours = cli_status(orch.registry.home, job_id)
    assert sorted(ours) == sorted(api), (sorted(ours), sorted(api))
    for key in api:
        assert ours[key] == json.loads(json.dumps(api[key], default=str)), (key, ours[key], api[key])
    return api


def running_workers(orch: TrainingOrchestrator, job_id: str) -> list[int]:
    """Pids of the local controllers of a job's (or batch's) tasks that are still alive."""
    record = orch.registry.get(job_id)
    tasks = orch.registry.children(record.id) or [record]
    return [int(t.scheduler_id) for t in tasks if t.scheduler_id and psutil.pid_exists(int(t.scheduler_id))]


@pytest.mark.timeout(300)
def test_cli_and_api_give_the_same_status_for_every_kind_and_end(orch: TrainingOrchestrator, tmp_path: Path) -> None:
    job = orch.submit_training_job("quick", QUICK)
    batch = orch.submit_batch_training([QUICK, {**QUICK, "params": {"n_estimators": 7, "n_jobs": 1}}], name="two")
    search = orch.hyperparameter_search("random_forest", {"n_estimators": [3, 5]}, cv=2, parallel=1,
                                        data="sklearn:iris", params={"n_jobs": 1}, metric="accuracy")
    pipe = orch.create_pipeline(write_scripts(tmp_path, fail_stage="model_training"), name="breaks")
    pipe.run()
    for ended in (job.id, batch.id, search.id):
        assert orch.wait_for_completion(ended, timeout=240)["status"] == "completed", orch.get_job_status(ended)
    assert pipe.wait(timeout=240)["status"] == "failed"

    assert assert_same_document(orch, job.id)["progress"] == 1.0
    document = assert_same_document(orch, batch.id)
    assert document["kind"] == "batch" and len(document["tasks"]) == 2 and document["progress"] == 1.0
    document = assert_same_document(orch, search.id)
    assert document["trials"]["finished"] == 2 and document["best_params"] is not None
    document = assert_same_document(orch, pipe.id)
    assert [s["status"] for s in document["stages"]] == ["completed", "failed", "cancelled"]
    assert document["failed_stage"] == "model_training" and "training data is corrupt" in document["error"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("by", ["cli", "api"])
def test_cancel_from_cli_or_api_stops_every_task_and_reads_the_same(by: str, orch: TrainingOrchestrator) -> None:
    batch = orch.submit_batch_training([SLOW, SLOW], name="slow")
    # Cancelled at once, in the jobs' first instant (their controllers may not have started the workers
    # yet): the cancel must still stop every process and stay "cancelled".
    if by == "cli":
        proc = cli(orch.registry.home, "cancel", batch.id)
        assert proc.returncode == 0 and f"cancelled {batch.id} (2 task(s) stopped)" in proc.stdout, proc.stderr
    else:
        orch.cancel(batch.id)
    document = assert_same_document(orch, batch.id)
    assert document["status"] == "cancelled"
    assert [t["status"] for t in document["tasks"]] == ["cancelled", "cancelled"]
    for pid in [int(t.scheduler_id) for t in orch.registry.children(batch.id) if t.scheduler_id]:
        try:
            psutil.Process(pid).wait(timeout=60)  # the controller ends after its worker
        except psutil.NoSuchProcess:
            pass
    assert running_workers(orch, batch.id) == []
    run_dirs = [t.run_dir for t in orch.registry.children(batch.id)]
    deadline = time.monotonic() + 60
    while left := [p.pid for p in psutil.process_iter(["cmdline"])
                   if any(d in " ".join(p.info["cmdline"] or ()) for d in run_dirs)]:
        assert time.monotonic() < deadline, f"processes of the cancelled jobs still run: {left}"
        time.sleep(0.2)
