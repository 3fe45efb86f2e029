"""Pure checks at the door: the brief's config dicts become specs, bad input is a clear SpecError/UserError.

Nothing here submits a job.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpc_train.errors import SpecError, UserError
from hpc_train.orchestrator import TrainingOrchestrator
from hpc_train.orchestrator.config import checkpoint_section, spec_from_config
from hpc_train.orchestrator.pipeline import parse_stages, stage_parameters
from hpc_train.orchestrator.search import check_folds, grid_points, grid_queue, validate_search

BRIEF_RESOURCES = {"cpu": 4, "memory": "8GB", "gpu": 1}


def test_brief_config_and_resources_map_to_spec_sections() -> None:
    spec = spec_from_config("capability_classifier_v2", {
        "model": "random_forest", "data_path": "training_data.csv",
        "hyperparameters": {"n_estimators": 100, "max_depth": 20}}, resources=BRIEF_RESOURCES)
    assert spec.name == "capability_classifier_v2"
    assert spec.model.type == "random_forest"
    assert spec.model.hyperparameters == {"n_estimators": 100, "max_depth": 20}
    assert spec.data.train_path == "training_data.csv"
    r = spec.resources
    assert (r.cpus_per_task, r.memory, r.gpus_per_node) == (4, 8192, 1)


def test_torch_params_go_to_model_training_and_data() -> None:
    spec = spec_from_config("mlp", {"model": "neural_network", "data_path": "sklearn:digits", "epochs": 3,
                                    "params": {"hidden_sizes": [32], "dropout": 0.1, "learning_rate": 0.01,
                                               "batch_size": 64}})
    assert spec.model.hidden_sizes == [32] and spec.model.dropout == 0.1
    assert spec.training.learning_rate == 0.01 and spec.training.epochs == 3
    assert spec.data.batch_size == 64


def test_spec_field_names_and_spec_shaped_configs_are_accepted() -> None:
    spec = spec_from_config("a", {"model": "svm", "params": {"C": 2.0}}, resources={"cpus_per_task": 2, "time": 30})
    assert spec.resources.cpus_per_task == 2 and spec.resources.time == 1800
    spec = spec_from_config("b", {"model": {"type": "svm"}, "data": {"train_path": "sklearn:iris"}})
    assert spec.data.train_path == "sklearn:iris"
    again = spec_from_config("c", spec, resources={"cpu": 3})
    assert again.name == "c" and again.resources.cpus_per_task == 3


@pytest.mark.parametrize(("config", "resources", "key"), [
    ({"model": "random_forest", "params": {"n_trees": 5}}, None, "params.n_trees"),
    ({"model": "random_forest", "hyperparameters": {"max_depth": -5}}, None, "hyperparameters.max_depth"),
    ({"model": "xgboost"}, None, "model"),
    ({"model": "svm", "data_path": "sklearn:mnist"}, None, "data_path"),
    ({"model": "svm", "epochs": 0}, None, "epochs"),
    ({"model": "svm", "learning_rte": 0.1}, None, "learning_rte"),
    ({"data_path": "sklearn:iris"}, None, "model"),
    ({"model": "svm"}, {"cpu": 0}, "resources.cpu"),
    ({"model": "svm"}, {"memory": "lots"}, "resources.memory"),
    ({"model": "svm"}, {"gpu_count": 1}, "resources.gpu_count"),
    ({"model": "neural_network", "params": {"layers": 3}}, None, "params.layers"),
])
def test_bad_config_names_the_key_as_written(config: dict, resources: dict | None, key: str) -> None:
    with pytest.raises(SpecError) as error:
        spec_from_config("job", config, resources=resources)
    assert error.value.key == key, str(error.value)
    assert isinstance(error.value, UserError) and error.value.exit_code == 2


@pytest.mark.parametrize(("config", "resources", "key"), [
    ({"model": "neural_network", "epochs": 3, "params": {"epochs": 5}}, None, "params.epochs"),
    ({"model": "neural_network", "batch_size": 8, "params": {"batch_size": 16}}, None, "params.batch_size"),
    ({"model": "svm", "data_path": "a.csv", "data": {"train_path": "b.csv"}}, None, "data.train_path"),
    ({"model": "svm", "resources": {"cpu": 2}}, {"cpus_per_task": 4}, "resources.cpus_per_task"),
    ({"model": {"type": "svm"}, "resources": {"memory": "1G"}}, {"mem": "2G"}, "resources.mem"),
    ({"model": {"type": "svm"}, "name": "other"}, None, "name"),
    ({"model": "neural_network", "params": {"hidden_sizes": [8]}, "hidden_sizes": [16]}, None, "params.hidden_sizes"),
])
def test_a_value_given_twice_is_refused_not_overwritten(config: dict, resources: dict | None, key: str) -> None:
    with pytest.raises(SpecError) as error:
        spec_from_config("job", config, resources=resources)
    assert error.value.key == key, str(error.value)
    assert "twice" in str(error.value)


def test_a_factorys_shape_arguments_go_to_the_factory() -> None:
    spec = spec_from_config("f", {"model": "mypackage.models:wide", "params": {"hidden_sizes": [8], "width": 3,
                                                                              "learning_rate": 0.1}})
    assert spec.model.hyperparameters == {"hidden_sizes": [8], "width": 3}
    assert spec.training.learning_rate == 0.1 and spec.model.hidden_sizes == [128, 64]


def test_values_that_cannot_apply_warn_once_through_the_api(tmp_path: Path) -> None:
    from hpc_train.spec.applicability import IgnoredSettingWarning, spec_warnings

    spec = spec_from_config("rf", {"model": "random_forest", "epochs": 3, "batch_size": 8},
                            checkpoint={"interval": 10, "auto_resume": True})
    assert [w.key for w in spec_warnings(spec, skip=("checkpoint",))] == ["data.batch_size", "training.epochs"]
    orch = TrainingOrchestrator(executor="local", home=tmp_path / "home", output_dir=str(tmp_path / "runs"))
    with pytest.warns(IgnoredSettingWarning) as caught:
        job = orch.submit_training_job("lr", {"model": "logistic_regression", "data_path": "sklearn:iris",
                                              "epochs": 3}, resume_from_checkpoint=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, IgnoredSettingWarning)]
    assert len(messages) == 2, messages  # training.epochs, and resume_from_checkpoint; not checkpoint.interval
    assert any("training.epochs" in m for m in messages) and any("resume_from_checkpoint" in m for m in messages)
    assert orch.wait_for_completion(job.id, timeout=240)["status"] == "completed"


def test_checkpoint_folder_is_per_job_unless_resuming(tmp_path: Path) -> None:
    fresh = checkpoint_section(tmp_path, 10, True, name="clf", job_id="abc", resume=False)
    resumed = checkpoint_section(tmp_path, 10, False, name="clf", job_id="abc", resume=True)
    assert fresh == {"interval": 10, "auto_resume": True, "dir": str(tmp_path / "clf-abc")}
    assert resumed == {"interval": 10, "auto_resume": True, "dir": str(tmp_path / "clf")}


def search(**overrides: object) -> dict:
    args: dict = {"model": "random_forest", "param_space": {"n_estimators": [10, 20], "max_depth": [2, None]},
                  "strategy": "grid", "metric": "f1_score", "direction": None, "cv": 3, "n_trials": None,
                  "parallel": None}
    args.update(overrides)
    return args


def test_search_budget_and_workers() -> None:
    grid = validate_search(**search())
    assert (grid.budget, grid.parallel, grid.direction) == (4, 2, "maximize")
    assert validate_search(**search(n_trials=3, parallel=8)).budget == 3
    assert validate_search(**search(n_trials=3, parallel=8)).parallel == 3  # never more workers than trials
    assert validate_search(**search(strategy="random")).budget == 20
    assert validate_search(**search(metric="loss")).direction == "minimize"
    assert len(list(grid_points(grid.param_space))) == 4


def test_grid_is_queued_costliest_first_and_capped_by_n_trials() -> None:
    space = {"n_estimators": [50, 200, 100], "max_depth": [10, None], "criterion": ["gini", "entropy"]}
    queue = grid_queue(validate_search(**search(param_space=space)))
    assert len(queue) == 12 and queue[0] == {"n_estimators": 200, "max_depth": None, "criterion": "gini"}
    assert [p["n_estimators"] for p in queue] == [200] * 4 + [100] * 4 + [50] * 4
    assert queue[-1]["max_depth"] == 10
    capped = grid_queue(validate_search(**search(param_space=space, n_trials=5)))
    assert len(capped) == 5 and len({tuple(p.values()) for p in capped}) == 5
    assert capped == grid_queue(validate_search(**search(param_space=space, n_trials=5)))  # seeded


@pytest.mark.parametrize(("overrides", "key"), [
    ({"metric": "auc"}, "metric"),
    ({"model": "xgboost"}, "model"),
    ({"strategy": "anneal"}, "search_strategy"),
    ({"param_space": {}}, "param_space"),
    ({"param_space": [("max_depth", [1, 2])]}, "param_space"),
    ({"param_space": {"max_depth": []}}, "param_space.max_depth"),
    ({"param_space": {"max_depth": 5}}, "param_space.max_depth"),
    ({"param_space": {"max_depth": {"low": 1, "high": 9}}}, "param_space.max_depth"),  # a range in a grid
    ({"param_space": {"max_depth": [3, -1]}}, "param_space.max_depth"),
    ({"param_space": {"depth": [3]}}, "param_space.depth"),
    ({"cv": 1}, "cv"),
    ({"cv": 2.5}, "cv"),
    ({"n_trials": 0}, "n_trials"),
    ({"direction": "up"}, "direction"),
    ({"strategy": "random", "param_space": {"C": {"low": 1, "high": 0}}, "model": "svm"}, "param_space.C"),
])
def test_bad_search_is_a_spec_error_naming_the_argument(overrides: dict, key: str) -> None:
    with pytest.raises(SpecError) as error:
        validate_search(**search(**overrides))
    assert error.value.key == key, str(error.value)


def test_more_folds_than_the_smallest_class_is_refused() -> None:
    check_folds(3, [0, 0, 0, 1, 1, 1])
    with pytest.raises(SpecError, match="class 1 has only 2 samples") as error:
        check_folds(3, [0, 0, 0, 1, 1])
    assert error.value.key == "cv" and "cv <= 2" in str(error.value)


def test_search_over_the_smallest_class_is_refused_before_anything_runs(tmp_path: Path) -> None:
    csv = tmp_path / "tiny.csv"
    csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{'x' if i < 8 else 'y'}\n" for i in range(10)))
    orch = TrainingOrchestrator(executor="local", home=tmp_path / "home", output_dir=str(tmp_path / "runs"))
    with pytest.raises(SpecError, match="class 'y' has only 2 samples"):
        orch.hyperparameter_search("logistic_regression", {"C": [0.1, 1.0]}, cv=3, data=str(csv))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert orch.registry.list() == []


def test_pipeline_stages_are_checked(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print('a')\n")
    stages = parse_stages([{"stage": "prep", "script": "a.py", "args": ["--n", 3]}], base_dir=tmp_path)
    assert stages[0].script == str(tmp_path / "a.py") and stages[0].args == ("--n", "3")
    for bad, key in [([], None), ([{"stage": "x"}], "stages[0].script"),
                     ([{"stage": "x", "script": "missing.py"}], "stages[0].script"),
                     ([{"stage": "a b", "script": "a.py"}], "stages[0].stage"),
                     ([{"stage": "prep\n", "script": "a.py"}], "stages[0].stage"),
                     ([{"stage": "x", "script": "a.py", "command": "ls"}], "stages[0].command"),
                     ([{"stage": "x", "script": "a.py"}, {"stage": "x", "script": "a.py"}], "stages[1].stage"),
                     ([{"stage": "x", "script": "a.py", "resources": {"cpu": -1}}], "stages[0].resources")]:
        with pytest.raises(SpecError) as error:
            parse_stages(bad, base_dir=tmp_path)
        assert error.value.key == key, str(error.value)


def test_stage_parameters_chain_with_afterok() -> None:
    first = stage_parameters("p-prep", {"cpus_per_task": 2, "memory": "1GB"}, None)
    assert (first["cpus_per_task"], first["mem"], first["job_name"]) == (2, "1024M", "p-prep")
    assert "dependency" not in first["additional_parameters"]
    second = stage_parameters("p-train", {}, "afterok:41")
    assert second["additional_parameters"]["dependency"] == "afterok:41"
    assert second["additional_parameters"]["kill-on-invalid-dep"] == "yes"


def test_orchestrator_rejects_unknown_executor_and_interval(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown executor"):
        TrainingOrchestrator(executor="kubernetes", home=tmp_path)
    with pytest.raises(UserError, match="checkpoint_interval"):
        TrainingOrchestrator(checkpoint_interval=0, home=tmp_path)


def test_top_level_imports_are_lazy() -> None:
    code = ("import sys, hpc_train; from hpc_train import TrainingOrchestrator; "
            "assert 'torch' not in sys.modules and 'optuna' not in sys.modules, sorted(sys.modules); "
            "from hpc_train import TrainingMonitor; "
            "import hpc_train.orchestrator as o; assert hpc_train.TrainingOrchestrator is o.TrainingOrchestrator; "
            "print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    with pytest.raises(AttributeError):
        import hpc_train

        hpc_train.NoSuchThing  # noqa: B018
