"""The brief's Python API end to end on the local executor: a job, a batch, a grid search, a pipeline.

Jobs are small (random forests and SVMs on digits, a 3-epoch MLP); the grid search is the brief's,
as written (9 points, cv=5).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from orch_helpers import write_digits_csv, write_scripts

from hpc_train.errors import UserError
from hpc_train.orchestrator import BatchJobs, Job, Pipeline, SearchJob, TrainingOrchestrator
from hpc_train.spec import load_spec

STATUS_KEYS = {"status", "progress", "eta"}


@pytest.mark.timeout(300)
def test_brief_example_end_to_end(orch: TrainingOrchestrator, tmp_path: Path) -> None:
    from hpc_train import TrainingOrchestrator as FromTop

    assert FromTop is TrainingOrchestrator
    orch = FromTop(checkpoint_dir="ckpt", checkpoint_interval=10, auto_resume=True, executor="local",
                   home=orch.registry.home, output_dir=orch.output_dir)
    training_data = write_digits_csv(tmp_path / "training_data.csv")
    job = orch.submit_training_job(
        name="capability_classifier_v2",
        config={"model": "random_forest", "data_path": str(training_data),
                "hyperparameters": {"n_estimators": 100, "max_depth": 20}},
        resources={"cpu": 4, "memory": "8GB", "gpu": 1},
        resume_from_checkpoint=True)
    checkpoint = load_spec(job.run_dir / "spec.yaml").checkpoint  # resumable: the same folder for this name
    assert (checkpoint.dir, checkpoint.interval, checkpoint.auto_resume) == (
        str(tmp_path / "ckpt" / "capability_classifier_v2"), 10, True)
    early = orch.get_job_status(job.id)
    assert STATUS_KEYS <= set(early) and early["status"] in ("pending", "running")
    assert 0.0 <= early["progress"] <= 1.0
    final = orch.wait_for_completion(job.id)
    assert (final["status"], final["progress"], final["eta"]) == ("completed", 1.0, "0s")
    results = orch.get_results(job.id)
    assert results["f1_score"] > 0.9 and Path(results["model_path"]).is_file()

    jobs = orch.submit_batch_training([
        {"model": "random_forest", "data_path": "sklearn:digits", "params": {"n_estimators": 30}},
        {"model": "svm", "data_path": "sklearn:digits", "params": {"C": 5.0}},
        {"model": "neural_network", "data_path": "sklearn:digits",
         "params": {"hidden_sizes": [32], "epochs": 3, "learning_rate": 0.01}}])
    assert isinstance(jobs, BatchJobs) and len(jobs) == 3
    statuses = orch.wait_for_all(jobs)
    assert [s["status"] for s in statuses] == ["completed"] * 3, statuses
    assert orch.get_job_status(jobs.id)["status"] == "completed"
    best = orch.select_best_model(jobs, metric="f1_score")
    assert best.name == "svm" and best.value > 0.95 and Path(best.model_path).is_file()

    search = orch.hyperparameter_search(model="random_forest",
                                        param_space={"n_estimators": [50, 100, 200], "max_depth": [10, 20, 30]},
                                        search_strategy="grid", metric="f1_score", cv=5)
    assert isinstance(search, SearchJob)
    assert search.wait()["status"] == "completed"
    trials = search.trials
    assert len(trials) == 9 and {t["state"] for t in trials} == {"complete"}
    assert len({tuple(sorted(t["params"].items())) for t in trials}) == 9
    assert all(len(search.study().trials[t["number"]].user_attrs["cv_scores"]) == 5 for t in trials)
    assert search.best_value == max(t["value"] for t in trials) > 0.9
    assert set(search.best_params) == {"n_estimators", "max_depth"}
    status = search.status()
    assert status["trials"]["finished"] == status["trials"]["budget"] == 9 and status["progress"] == 1.0

    stages = write_scripts(tmp_path)
    pipe = orch.create_pipeline(stages)
    assert pipe.status()["status"] == "not submitted"
    pipe.run()
    state = pipe.wait()
    assert state["status"] == "completed" and [s["status"] for s in state["stages"]] == ["completed"] * 3
    assert (tmp_path / "stages.log").read_text().split() == [s["stage"] for s in stages]


@pytest.mark.timeout(120)
def test_pipeline_stops_at_failing_middle_stage(orch: TrainingOrchestrator, tmp_path: Path) -> None:
    pipe = orch.create_pipeline(write_scripts(tmp_path, fail_stage="model_training"), name="etl").run()
    state = pipe.wait()
    assert state["status"] == "failed" and state["failed_stage"] == "model_training"
    stages = {s["stage"]: s for s in state["stages"]}
    assert stages["data_preprocessing"]["status"] == "completed"
    assert stages["model_training"]["status"] == "failed"
    assert "training data is corrupt" in stages["model_training"]["error"]
    assert stages["model_evaluation"]["status"] == "cancelled"
    assert stages["model_evaluation"]["note"] == "not run: stage 'model_training' failed"
    assert (tmp_path / "stages.log").read_text().split() == ["data_preprocessing", "model_training"]
    with pytest.raises(UserError, match="already submitted"):
        pipe.run()


@pytest.mark.timeout(180)
def test_select_best_model_on_mixed_success_and_failure(orch: TrainingOrchestrator, tmp_path: Path) -> None:
    jobs = orch.submit_batch_training([
        {"model": "random_forest", "data_path": "sklearn:iris", "params": {"n_estimators": 5}},
        {"model": "logistic_regression", "data_path": str(tmp_path / "missing.csv")},  # fails inside the job
        {"model": "svm", "data_path": "sklearn:iris", "params": {"C": 1.0}}])
    statuses = orch.wait_for_all(jobs)
    assert [s["status"] for s in statuses] == ["completed", "failed", "completed"]
    assert "data file not found" in statuses[1]["error"]
    batch = orch.get_job_status(jobs.id)
    assert batch["status"] == "failed" and "logistic_regression" in batch["error"]
    best = orch.select_best_model(jobs, metric="accuracy")
    assert best.id in (jobs[0].id, jobs[2].id) and best.value > 0.8
    by_loss = orch.select_best_model(jobs.id, metric="loss")  # loss: lower is better, a batch id works too
    losses = {j.id: orch.get_results(j.id)["loss"] for j in (jobs[0], jobs[2])}
    assert by_loss.id == min(losses, key=losses.get)
    with pytest.raises(UserError, match="unknown metric 'auc'"):
        orch.select_best_model(jobs, metric="auc")
    with pytest.raises(UserError, match="no job succeeded"):
        orch.select_best_model([jobs[1]])
    with pytest.raises(UserError, match="no results; it is failed"):
        orch.get_results(jobs[1].id)


@pytest.mark.timeout(180)
def test_a_new_orchestrator_finds_everything_by_id(orch: TrainingOrchestrator, tmp_path: Path) -> None:
    job = orch.submit_training_job("one", {"model": "svm", "data_path": "sklearn:iris"})
    search = orch.hyperparameter_search("svm", {"C": [0.5, 1.0]}, cv=3, data="sklearn:iris", parallel=1)
    pipe = orch.create_pipeline(write_scripts(tmp_path)).run()
    batch = orch.submit_batch_training([{"model": "svm", "data_path": "sklearn:iris"}])
    for item in (job, search, pipe, batch):
        orch.wait_for_completion(item.id)
    del orch
    later = TrainingOrchestrator(executor="local", home=tmp_path / "home")
    assert isinstance(later.job(job.id), Job) and later.get_results(job.id)["accuracy"] > 0.8
    found = later.job(search.id)
    assert isinstance(found, SearchJob) and found.best_params["C"] in (0.5, 1.0)
    assert isinstance(later.job(pipe.id), Pipeline)
    assert [s["status"] for s in later.get_job_status(pipe.id)["stages"]] == ["completed"] * 3
    assert later.get_results(batch.id)["tasks"][0]["results"]["accuracy"] > 0.8
    assert later.get_job_status(search.id[:6])["kind"] == "sweep"  # a unique prefix is enough
    assert later.get_results(search.id)["best_params"] == found.best_params
