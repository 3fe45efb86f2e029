"""The orchestrator on the real local SLURM cluster: the brief's batch as one array, a 12-point grid
shared by a 3-task array, an afterok pipeline whose middle stage fails, and a cancelled sweep resubmitted.

The test nodes have 2 CPUs and no GPU, so jobs ask for 1 CPU and 500 MB (the brief's `{"cpu": 4,
"gpu": 1}` could never start here); everything else is the brief's code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support import SlurmCluster, write_stage_scripts

from hpc_train.commands import CALL_COUNTS
from hpc_train.orchestrator import TrainingOrchestrator
from hpc_train.scheduler.sacct import query_states
from hpc_train.status import JobStatus

pytestmark = pytest.mark.slurm

SMALL = {"cpu": 1, "memory": "500MB", "time": "00:10:00"}


@pytest.fixture
def orch(slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TrainingOrchestrator:
    for name in list(os.environ):  # this process is a login shell, not a job
        if name.startswith("SLURM_") and name != "SLURM_CONF":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return TrainingOrchestrator(executor="slurm", home=tmp_path / "home", output_dir=tmp_path / "runs")


def sbatch_calls() -> int:
    return CALL_COUNTS.get("sbatch", 0)


@pytest.mark.timeout(400)
def test_brief_example_on_slurm(orch: TrainingOrchestrator) -> None:
    job = orch.submit_training_job(name="capability_classifier_v2",
                                   config={"model": "random_forest", "data_path": "sklearn:digits",
                                           "hyperparameters": {"n_estimators": 30, "max_depth": 20}},
                                   resources=SMALL, resume_from_checkpoint=True)
    assert orch.get_job_status(job.id)["status"] in ("pending", "running")
    assert orch.wait_for_completion(job.id, timeout=200)["status"] == "completed"
    assert orch.get_results(job.id)["f1_score"] > 0.9

    before = sbatch_calls()
    jobs = orch.submit_batch_training([
        {"model": "random_forest", "data_path": "sklearn:digits", "params": {"n_estimators": 30}},
        {"model": "svm", "data_path": "sklearn:digits", "params": {"C": 5.0}},
        {"model": "neural_network", "data_path": "sklearn:digits",
         "params": {"hidden_sizes": [32], "epochs": 3, "learning_rate": 0.01}}], resources=SMALL)
    assert sbatch_calls() - before == 2  # sbatch --test-only for the batch's one resource group, then one array
    tasks = [orch.registry.get(j.id).scheduler_id for j in jobs]
    array = tasks[0].split("_")[0]
    assert tasks == [f"{array}_{i}" for i in range(3)]
    statuses = orch.wait_for_all(jobs, timeout=300)
    assert [s["status"] for s in statuses] == ["completed"] * 3, statuses
    assert set(query_states(tasks).values()) == {JobStatus.COMPLETED}
    best = orch.select_best_model(jobs, metric="f1_score")
    assert best.name == "svm" and Path(best.model_path).is_file()
    assert orch.get_job_status(jobs.id)["status"] == "completed"


@pytest.mark.timeout(300)
def test_grid_of_12_points_on_a_3_task_array_runs_12_distinct_trials(orch: TrainingOrchestrator) -> None:
    before = sbatch_calls()
    search = orch.hyperparameter_search("random_forest", {"n_estimators": [5, 10, 15, 20], "max_depth": [2, 4, None]},
                                        cv=3, parallel=3, data="sklearn:iris", resources=SMALL,
                                        params={"n_jobs": 1})
    assert sbatch_calls() - before == 1
    workers = orch.registry.children(search.id)
    array = workers[0].scheduler_id.split("_")[0]
    assert [w.scheduler_id for w in workers] == [f"{array}_{i}" for i in range(3)]
    assert search.wait(timeout=240)["status"] == "completed", search.status()
    trials = search.trials
    assert len(trials) == 12 and {t["state"] for t in trials} == {"complete"}
    assert len({tuple(sorted(t["params"].items(), key=str)) for t in trials}) == 12
    assert len({t["worker"] for t in trials}) >= 2  # the tasks really shared the grid
    assert set(query_states([w.scheduler_id for w in workers]).values()) == {JobStatus.COMPLETED}


@pytest.mark.timeout(300)
def test_pipeline_with_failing_middle_stage_cancels_the_rest(orch: TrainingOrchestrator, tmp_path: Path) -> None:
    pipe = orch.create_pipeline(write_stage_scripts(tmp_path, fail_stage="model_training"), name="etl").run()
    stage_jobs = orch.registry.children(pipe.id)
    state = pipe.wait(timeout=240)
    assert state["status"] == "failed", state
    assert [s["status"] for s in state["stages"]] == ["completed", "failed", "cancelled"]
    assert state["stages"][2]["note"] == "not run: stage 'model_training' failed"
    assert "training data is corrupt" in state["stages"][1]["error"]
    sched = [j.scheduler_id for j in stage_jobs]
    assert query_states(sched) == {sched[0]: JobStatus.COMPLETED, sched[1]: JobStatus.FAILED,
                                   sched[2]: JobStatus.CANCELLED}  # cancelled by SLURM: afterok can never hold
    assert (tmp_path / "stages.log").read_text().split() == ["data_preprocessing", "model_training"]


@pytest.mark.timeout(400)
def test_cancelled_sweep_resubmitted_repeats_no_finished_trial(orch: TrainingOrchestrator) -> None:
    space = {"n_estimators": [60, 80], "max_depth": [6, 8, 10, None]}
    search = orch.hyperparameter_search("random_forest", space, cv=3, parallel=2, resources=SMALL,
                                        params={"n_jobs": 1})
    deadline = time.monotonic() + 200
    while search.status()["trials"]["finished"] < 2:
        assert time.monotonic() < deadline, search.status()
        time.sleep(1)
    search.cancel()
    before = {t["number"]: t["params"] for t in search.trials if t["state"] == "complete"}
    assert search.status()["status"] == "cancelled"
    again = search.resubmit()
    assert again.wait(timeout=240)["status"] == "completed", again.status()
    complete = [t for t in again.trials if t["state"] == "complete"]
    assert len({tuple(sorted(t["params"].items(), key=str)) for t in complete}) == len(complete) == 8
    assert {t["number"]: t["params"] for t in complete if t["number"] in before} == before
