"""`hpc-train sweep | best | pipeline` and `status`/`results` of sweeps and pipelines, as a user types them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from orch_helpers import LAUNCHER_PREFIXES, write_scripts
from support import REPO

from hpc_train.orchestrator.orchestrator import sweep_settings
from hpc_train.spec import load_spec

HPC_TRAIN = Path(sys.executable).parent / "hpc-train"

SWEEP_SPEC = """\
name: iris-sweep
model: {type: random_forest, hyperparameters: {n_jobs: 1}}
data: {train_path: sklearn:iris}
sweep:
  strategy: grid
  metric: accuracy
  cv: 3
  parallel: 2
  param_space: {n_estimators: [5, 10], max_depth: [2, null]}
"""


def hpc_train(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The console script with output to files (a pipe would be held open by local jobs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_PREFIXES)}
    env.update({"HPC_TRAIN_HOME": str(cwd / "registry"), "OMP_NUM_THREADS": "1"})
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run([str(HPC_TRAIN), *args], cwd=cwd, env=env, stdout=out, stderr=err, check=False,
                              timeout=timeout).returncode
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(args, code, out.read(), err.read())
    assert "Traceback" not in proc.stderr.split("hpc-train: error:")[0], proc.stderr
    return proc


@pytest.mark.timeout(240)
def test_sweep_best_status_results(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(SWEEP_SPEC)
    proc = hpc_train(tmp_path, "sweep", "sweep.yaml", "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    assert "grid search of random_forest, 4 trials, 2 workers on local" in proc.stdout
    sweep_id = proc.stdout.split()[-1]
    assert hpc_train(tmp_path, "wait", sweep_id, "--timeout", "150").returncode == 0

    status = json.loads(hpc_train(tmp_path, "status", sweep_id, "--json").stdout)
    assert status["kind"] == "sweep" and status["status"] == "completed"
    assert status["trials"]["finished"] == status["trials"]["budget"] == 4 and len(status["tasks"]) == 2
    assert "4/4 trials finished, best accuracy" in hpc_train(tmp_path, "status", sweep_id).stdout

    best = json.loads(hpc_train(tmp_path, "best", sweep_id, "--json").stdout)
    results = json.loads(hpc_train(tmp_path, "results", sweep_id, "--json").stdout)
    assert best["value"] == results["best_value"] == max(t["value"] for t in results["trials"])
    assert best["params"] == results["best_params"] and len(results["trials"]) == 4
    text = hpc_train(tmp_path, "best", sweep_id).stdout
    assert text.startswith(f"sweep {sweep_id}: best accuracy") and "n_estimators =" in text
    assert hpc_train(tmp_path, "results", sweep_id).stdout.count(" complete ") == 4


@pytest.mark.parametrize(("override", "message"), [
    ("sweep.metric=auc", "sweep.metric: unknown sweep metric"),
    ("sweep.strategy=anneal", "sweep.strategy: value not allowed"),
    ("sweep.param_space={}", "sweep.param_space"),
    ("sweep.param_space.max_depth=[]", "param_space.max_depth is empty"),
    ("sweep.param_space.max_depth=7", "sweep.param_space.max_depth"),
    ("sweep.param_space.depth=[1]", "sweep.param_space.depth: unknown hyperparameter for random_forest"),
    ("sweep.param_space.max_depth={low: 2, high: 9}", "sweep.param_space.max_depth: a grid search needs a list"),
    ("sweep.cv=1", "sweep.cv"),
    ("sweep.cv=51", "sweep.cv: cv=51 folds but class"),
    ("model.type=xgboost", "model.type"),
])
def test_bad_sweep_spec_exits_2(tmp_path: Path, override: str, message: str) -> None:
    (tmp_path / "sweep.yaml").write_text(SWEEP_SPEC)
    proc = hpc_train(tmp_path, "sweep", "sweep.yaml", "--executor", "local", "--set", override)
    assert proc.returncode == 2 and proc.stderr.startswith("hpc-train: error: sweep.yaml: "), proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(240)
def test_random_sweep_spec_takes_ranges(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(SWEEP_SPEC)
    ranges = "{n_estimators: {low: 5, high: 12}, min_samples_leaf: {low: 1, high: 8, log: true}}"
    bad = hpc_train(tmp_path, "sweep", "sweep.yaml", "--executor", "local", "--set", "sweep.strategy=random",
                    "--set", "sweep.param_space.max_depth={low: 2, hihg: 9}")
    assert bad.returncode == 2, bad.stderr
    assert "sweep.param_space.max_depth: a range needs low and high" in bad.stderr and "hihg" in bad.stderr
    proc = hpc_train(tmp_path, "sweep", "sweep.yaml", "--executor", "local", "--set", "sweep.strategy=random",
                     "--set", "sweep.trials=3", "--set", f"sweep.param_space={ranges}")
    assert proc.returncode == 0, proc.stderr
    assert "random search of random_forest, 3 trials" in proc.stdout
    sweep_id = proc.stdout.split()[-1]
    assert hpc_train(tmp_path, "wait", sweep_id, "--timeout", "150").returncode == 0
    trials = json.loads(hpc_train(tmp_path, "results", sweep_id, "--json").stdout)["trials"]
    assert len(trials) == 3
    for trial in trials:  # drawn from the ranges, as integers (low and high are)
        assert set(trial["params"]) == {"n_estimators", "min_samples_leaf"}, trial
        assert isinstance(trial["params"]["n_estimators"], int) and 5 <= trial["params"]["n_estimators"] <= 12
        assert isinstance(trial["params"]["min_samples_leaf"], int) and 1 <= trial["params"]["min_samples_leaf"] <= 8


def test_reference_spec_sweep_section_is_a_valid_search() -> None:
    spec = load_spec(REPO / "configs" / "reference.yaml")
    settings = sweep_settings(spec, "reference.yaml")
    assert settings.strategy == "random" and settings.budget == 8 and settings.parallel == 4
    assert settings.param_space["learning_rate"] == {"low": 0.0003, "high": 0.03, "log": True, "step": None}


def test_sweep_needs_a_sweep_section(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("name: plain\nmodel: {type: svm}\n")
    proc = hpc_train(tmp_path, "sweep", "job.yaml", "--executor", "local")
    assert proc.returncode == 2 and "job.yaml: sweep: the spec has no sweep section" in proc.stderr


@pytest.mark.timeout(120)
def test_pipeline_file_with_failing_middle_stage(tmp_path: Path) -> None:
    stages = write_scripts(tmp_path, fail_stage="model_training")
    (tmp_path / "pipeline.yaml").write_text("".join(f"- {{stage: {s['stage']}, script: {s['script']}}}\n"
                                                    for s in stages))
    proc = hpc_train(tmp_path, "pipeline", "pipeline.yaml", "--executor", "local", "--wait")
    assert proc.returncode == 1, proc.stderr
    pipeline_id = proc.stdout.split()[-1]
    assert "model_evaluation     cancelled  not run: stage 'model_training' failed" in proc.stdout
    text = hpc_train(tmp_path, "status", pipeline_id).stdout
    assert f"{pipeline_id}: stage model_training failed" in text and "training data is corrupt" in text
    results = json.loads(hpc_train(tmp_path, "results", pipeline_id, "--json").stdout)
    assert [t["status"] for t in results["tasks"]] == ["completed", "failed", "cancelled"]


def test_bad_pipeline_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text("- {stage: train, script: missing.py}\n")
    proc = hpc_train(tmp_path, "pipeline", "pipeline.yaml", "--executor", "local")
    assert proc.returncode == 2
    assert "pipeline.yaml: stages[0].script: stage script not found" in proc.stderr


@pytest.mark.timeout(120)
def test_best_of_a_batch_by_metric(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nmodel: {type: svm}\ndata: {train_path: sklearn:iris}\n")
    (tmp_path / "b.yaml").write_text("name: b\nmodel: {type: random_forest, hyperparameters: {n_estimators: 2, "
                                     "max_depth: 1}}\ndata: {train_path: sklearn:iris}\n")
    ids = [hpc_train(tmp_path, "submit", f"{n}.yaml", "--executor", "local").stdout.split()[-1] for n in "ab"]
    for job_id in ids:
        assert hpc_train(tmp_path, "wait", job_id, "--timeout", "100").returncode == 0
    best = json.loads(hpc_train(tmp_path, "best", *ids, "--metric", "accuracy", "--json").stdout)
    assert best["name"] == "a" and best["model_path"].endswith("model.joblib")
    proc = hpc_train(tmp_path, "best", *ids, "--metric", "auc")
    assert proc.returncode == 2 and "unknown metric 'auc'" in proc.stderr
