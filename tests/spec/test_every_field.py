"""Nothing in a spec is silently ignored: every leaf field of the spec model, given a non-default value,
is refused (exit 2, key named), warns (once, key named), or changes what the job does.

The leaves are found by walking the pydantic models of hpc_train/spec/model.py. CASES states, per
leaf, a value and what is expected in which context; the test then checks the behaviour itself:

- refused: `hpc-train validate` exits 2 naming the key;
- warns: `hpc-train validate` and `hpc-train submit --dry-run` exit 0 with exactly one warning naming it;
- acts: the observation differs from the same spec without the value (and no warning names it):
  the rendered files (sbatch script, Apptainer definition), a tiny in-process training (parameter
  digest, metrics, files written, resume), two ranks under mpirun (for `distributed`), the sweep's
  checked settings, or the requeue decision of a preempted job.

A new field missing from CASES fails test_every_leaf_has_a_case.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from support import REPO, require_mpirun

from hpc_train.cli.main import main
from hpc_train.spec import JobSpec, resolve_paths, validate_spec
from hpc_train.spec.applicability import spec_warnings

TORCH: dict[str, Any] = {"name": "walk", "model": {"type": "neural_network", "hidden_sizes": [8]},
                         "data": {"train_path": "sklearn:iris", "batch_size": 16},
                         "training": {"epochs": 2, "learning_rate": 0.05}}
SKLEARN: dict[str, Any] = {"name": "walk", "model": {"type": "logistic_regression"},
                           "data": {"train_path": "sklearn:iris"}}
# CSV files the data cases name (written by the csv_files fixture): iris with two candidate targets
IRIS_CSV = "iris.csv"          # f1..f4, species, big (last column: big)
IRIS_VAL_CSV = "iris_val.csv"  # f1..f4, species
START_CHECKPOINTS = "start-checkpoints"  # a folder of the torch spec's checkpoints (workdir fixture)
FACTORY: dict[str, Any] = {**TORCH, "model": {"type": "tests.cli.fixtures:tiny_mlp"}}
CONTAINER = {"container": {"image": "/images/a.sif"}}
SWEEP = {"sweep": {"param_space": {"C": [0.1, 1.0]}}}


@dataclass(frozen=True)
class Case:
    key: str
    value: Any
    expect: str  # acts | warns | refused
    base: dict[str, Any]
    observe: str = "script"  # acts: script | train | rerun | ranks | sweep | requeue
    context: dict[str, Any] = field(default_factory=dict)
    named: str | None = None  # the key a warning names, when not the leaf itself


def acts(key: str, value: Any, observe: str, base: dict[str, Any] = TORCH, **context: Any) -> Case:
    return Case(key, value, "acts", base, observe, context)


def warns(key: str, value: Any, base: dict[str, Any] = SKLEARN, named: str | None = None, **context: Any) -> Case:
    return Case(key, value, "warns", base, "", context, named)


def refused(key: str, value: Any, base: dict[str, Any] = TORCH, **context: Any) -> Case:
    return Case(key, value, "refused", base, "", context)


CASES: dict[str, list[Case]] = {
    "name": [acts("name", "other", "script")],
    "output_dir": [acts("output_dir", "elsewhere", "script")],
    "model.type": [acts("model.type", "svm", "train", SKLEARN)],
    "model.hyperparameters": [
        acts("model.hyperparameters", {"C": 0.01}, "train", SKLEARN),
        acts("model.hyperparameters", {"width": 4}, "train", FACTORY),
        refused("model.hyperparameters", {"n_trees": 3}, SKLEARN),
        refused("model.hyperparameters", {"hidden_sizes": [512, 512]}),
        refused("model.hyperparameters", {"bogus_param": 3}),
    ],
    "model.hidden_sizes": [acts("model.hidden_sizes", [16], "train"), warns("model.hidden_sizes", [16]),
                           warns("model.hidden_sizes", [16], FACTORY)],
    "model.dropout": [acts("model.dropout", 0.5, "train"), warns("model.dropout", 0.5), warns("model.dropout", 0.5, FACTORY)],
    "data.train_path": [acts("data.train_path", "sklearn:wine", "train", SKLEARN)],
    "data.val_path": [acts("data.val_path", IRIS_VAL_CSV, "train", SKLEARN)],
    "data.target": [acts("data.target", "species", "train", SKLEARN, data={"train_path": IRIS_CSV}),
                    warns("data.target", "species")],
    "data.val_fraction": [acts("data.val_fraction", 0.5, "train", SKLEARN),
                          warns("data.val_fraction", 0.5, data={"val_path": IRIS_VAL_CSV})],
    "data.batch_size": [acts("data.batch_size", 8, "train"), warns("data.batch_size", 8)],
    "data.standardize": [acts("data.standardize", False, "train", SKLEARN)],
    "data.drop": [acts("data.drop", ["big"], "train", SKLEARN, data={"train_path": IRIS_CSV, "target": "species"}),
                  refused("data.drop", ["f1"], SKLEARN)],
    "data.features": [acts("data.features", ["f1", "f2"], "train", SKLEARN,
                           data={"train_path": IRIS_CSV, "target": "species"}),
                      refused("data.features", ["f1"], SKLEARN)],
    "training.epochs": [acts("training.epochs", 3, "train"), warns("training.epochs", 3)],
    "training.seed": [acts("training.seed", 1, "train"), acts("training.seed", 1, "train", SKLEARN)],
    "training.learning_rate": [acts("training.learning_rate", 0.01, "train"),
                               warns("training.learning_rate", 0.01)],
    "training.optimizer": [acts("training.optimizer", "sgd", "train"), warns("training.optimizer", "sgd")],
    "training.momentum": [acts("training.momentum", 0.5, "train", training={"optimizer": "sgd"}),
                          warns("training.momentum", 0.5, TORCH),
                          warns("training.momentum", 0.5)],
    "training.weight_decay": [acts("training.weight_decay", 0.1, "train"),
                              acts("training.weight_decay", 0.1, "train", training={"optimizer": "sgd"}),
                              warns("training.weight_decay", 0.1)],
    "training.accumulation_steps": [acts("training.accumulation_steps", 2, "train"),
                                    warns("training.accumulation_steps", 2)],
    "training.mixed_precision": [acts("training.mixed_precision", True, "train"),
                                 warns("training.mixed_precision", True)],
    "training.gradient_checkpointing": [acts("training.gradient_checkpointing", True, "train"),
                                        warns("training.gradient_checkpointing", True)],
    "training.threads": [acts("training.threads", 2, "script")],
    "training.tensorboard": [acts("training.tensorboard", True, "train"), warns("training.tensorboard", True)],
    # early stopping: min_delta 10 means no epoch ever improves, so patience decides when training stops
    "training.early_stopping.patience": [
        acts("training.early_stopping.patience", 1, "train", training={"epochs": 4, "early_stopping": {"min_delta": 10.0}}),
        warns("training.early_stopping.patience", 1, named="training.early_stopping")],
    "training.early_stopping.metric": [
        acts("training.early_stopping.metric", "accuracy", "train",
             training={"epochs": 4, "early_stopping": {"patience": 1, "mode": "min"}})],
    "training.early_stopping.mode": [
        acts("training.early_stopping.mode", "max", "train", training={"epochs": 4, "early_stopping": {"patience": 1}})],
    "training.early_stopping.min_delta": [
        acts("training.early_stopping.min_delta", 10.0, "train",
             training={"epochs": 4, "early_stopping": {"patience": 1}})],
    "distributed.strategy": [acts("distributed.strategy", "fsdp", "ranks"), warns("distributed.strategy", "fsdp")],
    "distributed.backend": [acts("distributed.backend", "mpi", "ranks"), warns("distributed.backend", "mpi")],
    "distributed.compression": [acts("distributed.compression", "fp16", "ranks"),
                                warns("distributed.compression", "fp16")],
    "resources.nodes": [acts("resources.nodes", 2, "script"), refused("resources.nodes", 2, SKLEARN)],
    "resources.tasks_per_node": [acts("resources.tasks_per_node", 2, "script")],
    "resources.gpus_per_node": [acts("resources.gpus_per_node", 1, "script")],
    "resources.cpus_per_task": [acts("resources.cpus_per_task", 2, "script")],
    "resources.memory": [acts("resources.memory", "8G", "script")],
    "resources.time": [acts("resources.time", 30, "script")],
    "resources.partition": [acts("resources.partition", "debug", "script")],
    "resources.account": [acts("resources.account", "project", "script")],
    "resources.qos": [acts("resources.qos", "high", "script")],
    "resources.constraint": [acts("resources.constraint", "a100", "script")],
    "resources.modules": [acts("resources.modules", ["cuda/12.1"], "script")],
    "resources.env": [acts("resources.env", {"NCCL_DEBUG": "WARN"}, "script")],
    "resources.venv": [acts("resources.venv", "/opt/venv", "script")],
    "resources.extra_sbatch": [acts("resources.extra_sbatch", ["--exclusive"], "script")],
    "container.image": [acts("container.image", "/images/b.sif", "script", **CONTAINER)],
    "container.binds": [acts("container.binds", ["/scratch"], "script", **CONTAINER)],
    "container.nv": [acts("container.nv", False, "script", **CONTAINER)],
    "container.bootstrap": [acts("container.bootstrap", "localimage", "script", **CONTAINER)],
    "container.base": [acts("container.base", "ubuntu:24.04", "script", **CONTAINER)],
    "container.packages": [acts("container.packages", ["tensorboard"], "script", **CONTAINER)],
    "checkpoint.dir": [acts("checkpoint.dir", "elsewhere", "train"), warns("checkpoint.dir", "elsewhere")],
    "checkpoint.interval": [acts("checkpoint.interval", 2, "train"), warns("checkpoint.interval", 2)],
    "checkpoint.unit": [acts("checkpoint.unit", "steps", "train"), warns("checkpoint.unit", "steps")],
    "checkpoint.keep_last": [acts("checkpoint.keep_last", 1, "train"), warns("checkpoint.keep_last", 1)],
    "checkpoint.async_save": [acts("checkpoint.async_save", True, "train",
                                   checkpoint={"unit": "steps", "interval": 5}),
                              warns("checkpoint.async_save", True)],
    "checkpoint.resume_from": [acts("checkpoint.resume_from", START_CHECKPOINTS, "train"),
                               refused("checkpoint.resume_from", "no-such-checkpoints"),
                               refused("checkpoint.resume_from", START_CHECKPOINTS, distributed={"strategy": "fsdp"}),
                               warns("checkpoint.resume_from", START_CHECKPOINTS)],
    "checkpoint.auto_resume": [acts("checkpoint.auto_resume", False, "rerun"),
                               warns("checkpoint.auto_resume", False)],
    "preemption.signal": [acts("preemption.signal", "USR2", "script")],
    "preemption.grace_seconds": [acts("preemption.grace_seconds", 60, "script")],
    "preemption.max_requeues": [acts("preemption.max_requeues", 2, "requeue")],
    "preemption.requeue": [acts("preemption.requeue", False, "script")],
    "sweep.strategy": [acts("sweep.strategy", "random", "sweep", SKLEARN, **SWEEP)],
    "sweep.metric": [acts("sweep.metric", "accuracy", "sweep", SKLEARN, **SWEEP)],
    "sweep.direction": [acts("sweep.direction", "minimize", "sweep", SKLEARN, **SWEEP)],
    "sweep.trials": [acts("sweep.trials", 1, "sweep", SKLEARN, **SWEEP)],
    "sweep.parallel": [acts("sweep.parallel", 1, "sweep", SKLEARN, **SWEEP)],
    "sweep.cv": [acts("sweep.cv", 2, "sweep", SKLEARN, **SWEEP)],
    "sweep.param_space": [acts("sweep.param_space", {"C": [0.5]}, "sweep", SKLEARN, **SWEEP)],
}
# two ranks under mpirun take ~25 s a case on two cores
ALL_CASES = [pytest.param(case, marks=[pytest.mark.mpi, pytest.mark.slow]) if case.observe == "ranks" else case
             for cases in CASES.values() for case in cases]


def _section(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def leaves(model: type[BaseModel] = JobSpec, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of the spec model: key path -> its pydantic FieldInfo."""
    found: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        section = _section(info.annotation)
        if section is None:
            found[prefix + name] = info
        else:
            found.update(leaves(section, f"{prefix}{name}."))
    return found


def test_every_leaf_has_a_case() -> None:
    fields = leaves()
    missing = sorted(set(fields) - set(CASES))
    assert not missing, f"spec fields without a case in CASES (decide: acts, warns or refused): {missing}"
    assert not sorted(set(CASES) - set(fields)), "CASES names fields the spec model no longer has"
    assert all(cases for cases in CASES.values())
    assert len(fields) > 60  # the walk found the nested sections too


# -- building and observing specs


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node = data
    for part in sections:
        node = node.setdefault(part, {})
    node[leaf] = copy.deepcopy(value)


def _get(spec: BaseModel, key: str) -> Any:
    node: Any = spec
    for part in key.split("."):
        node = getattr(node, part)
    return node


def specs_for(case: Case) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the context, the context with the case's value)."""
    before = copy.deepcopy(case.base)
    _merge(before, case.context)
    after = copy.deepcopy(before)
    _set(after, case.key, case.value)
    return before, after


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the CSV files the data cases name; specs are written and resolved here."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("fields")
    iris = load_iris()
    rows = [[*map(float, x), int(t), int(t == 2)] for x, t in zip(iris.data, iris.target, strict=True)]
    lines = ["f1,f2,f3,f4,species,big"] + [",".join(map(str, row)) for row in rows]
    (folder / IRIS_CSV).write_text("\n".join(lines) + "\n")
    val = ["f1,f2,f3,f4,species"] + [",".join(map(str, row[:5])) for row in rows[::5]]
    (folder / IRIS_VAL_CSV).write_text("\n".join(val) + "\n")
    # checkpoints of the torch spec trained once, for checkpoint.resume_from
    from hpc_train.rundir import RunDirectory
    from hpc_train.runtime.worker import run_spec

    start = validate_spec({**TORCH, "checkpoint": {"dir": str(folder / START_CHECKPOINTS)}})
    run_spec(start, RunDirectory(folder / "start-run"), base_dir=folder)
    return folder


def write_spec(folder: Path, data: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def rendered(data: dict[str, Any], workdir: Path) -> str:
    from hpc_train.jobs import prepare_job
    from hpc_train.render import render_apptainer, render_sbatch

    prepared = prepare_job(validate_spec(data), base_dir=workdir, job_id="fixed", write=False)
    text = render_sbatch(prepared.spec, prepared.context)
    return text + (render_apptainer(prepared.spec) if prepared.spec.container is not None else "")


def trained(data: dict[str, Any], workdir: Path, root: Path, *, runs: int = 1) -> dict[str, Any]:
    """Train in this process (`runs` times in the same run directory); what the last run did."""
    from hpc_train.errors import UserError
    from hpc_train.rundir import RunDirectory
    from hpc_train.runtime.worker import run_spec

    root.mkdir(parents=True)
    cwd = Path.cwd()
    os.chdir(root)  # checkpoint.dir is relative to the current directory, as for the CLI
    try:
        spec = resolve_paths(validate_spec(data), workdir)
        for _ in range(runs):
            results = run_spec(spec, RunDirectory(root / "run"), base_dir=workdir)
    except UserError as exc:  # refused by the job (e.g. tensorboard asked for but not installed): it acted
        return {"refused by the job": str(exc)}
    finally:
        os.chdir(cwd)
    return observed(results, root)


def observed(results: dict[str, Any], root: Path) -> dict[str, Any]:
    keys = ("param_digests", "accuracy", "loss", "f1_score", "n_train", "n_val", "n_features", "epochs_run",
            "resumed_from_step", "warm_started_from", "checkpointed_blocks", "gradient_transport", "stopped_early", "background_checkpoints")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return {**{key: results.get(key) for key in keys}, "files": files}


def two_ranks(data: dict[str, Any], workdir: Path, root: Path) -> dict[str, Any]:
    """Two ranks under mpirun (`hpc-train launch -np 2`); what they trained."""
    require_mpirun()
    root.mkdir(parents=True)
    spec = write_spec(root, data)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "hpc_train", "launch", "-np", "2", "--run-dir", str(root / "run"),
                           str(spec)], capture_output=True, text=True, timeout=300, env=env, check=False, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((root / "run" / "results.json").read_text())
    return observed(results, root / "run")


def sweep_observed(data: dict[str, Any]) -> dict[str, Any]:
    from hpc_train.orchestrator.orchestrator import sweep_settings

    return sweep_settings(validate_spec(data)).to_json()


def requeue_observed(data: dict[str, Any]) -> str | None:
    """Whom a job preempted after its second restart asks SLURM to requeue (pure: nothing is called)."""
    from hpc_train.runtime.preemption import job_to_requeue

    return job_to_requeue(validate_spec(data).preemption.max_requeues,
                          {"SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": "2"})


_seen: dict[str, Any] = {}


def observe(case: Case, data: dict[str, Any], workdir: Path, root: Path) -> Any:
    cache_key = case.observe + json.dumps(data, sort_keys=True)  # contexts repeat: observe each once
    if cache_key not in _seen:
        kinds = {
            "script": lambda: rendered(data, workdir),
            "train": lambda: trained(data, workdir, root),
            "rerun": lambda: trained(data, workdir, root, runs=2),
            "ranks": lambda: two_ranks(data, workdir, root),
            "sweep": lambda: sweep_observed(data),
            "requeue": lambda: requeue_observed(data),
        }
        _seen[cache_key] = kinds[case.observe]()
    return _seen[cache_key]


def _id(case: Any) -> str:
    base = {id(TORCH): "torch", id(SKLEARN): "sklearn", id(FACTORY): "factory"}[id(case.base)]
    extra = "+" + ",".join(sorted(case.context)) if case.context else ""
    return f"{case.key}={json.dumps(case.value)}-{case.expect}-{base}{extra}"


@pytest.mark.parametrize("case", ALL_CASES, ids=_id)
def test_field_is_refused_warns_or_acts(case: Case, workdir: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    before, after = specs_for(case)
    default = leaves()[case.key].get_default(call_default_factory=True)
    assert case.value != default, "a case must use a non-default value"
    path = write_spec(workdir, after, f"{tmp_path.name}.yaml")
    code, err = cli(["validate", "-q", str(path)], capsys)
    named = case.named or case.key
    if case.expect == "refused":
        assert code == 2, f"{case.key}={case.value!r} was accepted"
        assert f": {named}" in err and "Traceback" not in err, err
        return
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("hpc-train: warning:")]
    naming = [line for line in warnings if f": {named}: " in line]
    if case.expect == "warns":
        assert len(naming) == 1, f"expected one warning naming {named}, got:\n{err}"
        code, err = cli(["submit", "--executor", "local", "--dry-run", str(path)], capsys)
        assert code == 0, err
        assert len([line for line in err.splitlines() if f": {named}: " in line]) == 1, err
        return
    assert not naming, f"{case.key} acts here, yet a warning says it does not:\n{err}"
    assert before != after
    unchanged = observe(case, before, workdir, tmp_path / "before")
    changed = observe(case, after, workdir, tmp_path / "after")
    assert changed != unchanged, f"{case.key}={case.value!r} changed nothing that {case.observe!r} observes"
    assert _get(validate_spec(after), case.key) != _get(validate_spec(before), case.key)


# -- the cases the issue reported, as regression tests


def test_mlp_settings_in_hyperparameters_are_refused_pointing_to_their_key(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, {"name": "t", "model": {"type": "neural_network",
                                                        "hyperparameters": {"hidden_sizes": [512, 512]}}})
    code, err = cli(["validate", str(spec)], capsys)
    assert code == 2 and "model.hyperparameters.hidden_sizes" in err and "model.hidden_sizes: [512, 512]" in err, err
    spec = write_spec(tmp_path, {"name": "t", "model": {"type": "neural_network",
                                                        "hyperparameters": {"bogus_param": 3}}})
    code, err = cli(["validate", str(spec)], capsys)
    assert code == 2 and "model.hyperparameters.bogus_param" in err and "got 3" in err, err


def test_unknown_sklearn_hyperparameter_is_refused_at_validate_listing_the_estimators(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, {"name": "t", "model": {"type": "random_forest",
                                                        "hyperparameters": {"n_trees": 3}}})
    code, err = cli(["validate", str(spec)], capsys)
    assert code == 2 and "model.hyperparameters.n_trees" in err and "n_estimators" in err and "max_depth" in err, err


@pytest.mark.parametrize("setting", [{"optimizer": "sgd", "momentum": 0.5}, {"weight_decay": 0.1},
                                     {"optimizer": "sgd", "weight_decay": 0.1}])
def test_momentum_and_weight_decay_change_the_trained_parameters(setting: dict[str, Any], workdir: Path,
                                                                tmp_path: Path) -> None:
    plain = {**TORCH, "training": {**TORCH["training"], "optimizer": setting.get("optimizer", "adam")}}
    tuned = {**TORCH, "training": {**TORCH["training"], **setting}}
    first = trained(plain, workdir, tmp_path / "plain")["param_digests"]
    second = trained(tuned, workdir, tmp_path / "tuned")["param_digests"]
    again = trained(tuned, workdir, tmp_path / "again")["param_digests"]
    assert second != first and second == again  # honoured, and deterministic


def test_a_sweep_section_warns_when_the_spec_is_trained_once(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, {**SKLEARN, **SWEEP})
    code, err = cli(["validate", "-q", str(spec)], capsys)
    assert code == 0 and err == ""
    code, err = cli(["submit", "--executor", "local", "--dry-run", str(spec)], capsys)
    assert code == 0 and err.count("hpc-train: warning:") == 1 and ": sweep: " in err, err


def test_warnings_are_only_for_non_default_values() -> None:
    spec = validate_spec({**SKLEARN, "data": {"train_path": "sklearn:iris", "batch_size": 32},
                          "training": {"epochs": 10}})
    assert spec_warnings(spec) == []
    assert [w.key for w in spec_warnings(validate_spec({**SKLEARN, "training": {"epochs": 11}}))] == [
        "training.epochs"]


def test_a_sweep_warns_about_what_its_trials_do_not_use() -> None:
    spec = validate_spec({**TORCH, "training": {**TORCH["training"], "accumulation_steps": 2, "threads": 2},
                          "checkpoint": {"keep_last": 1}, **SWEEP})
    assert spec_warnings(spec) == []  # validate: the same spec may be submitted as a job
    keys = [w.key for w in spec_warnings(spec, sweep=True)]
    assert keys == ["training.accumulation_steps", "checkpoint.keep_last"]  # threads: the workers use it


def test_a_factory_refuses_hyperparameters_it_does_not_take(workdir: Path, tmp_path: Path) -> None:
    spec = {**FACTORY, "model": {**FACTORY["model"], "hyperparameters": {"widht": 4}}}
    refused_by_job = trained(spec, workdir, tmp_path / "r")["refused by the job"]
    assert "model.hyperparameters.widht" in refused_by_job and "allowed: width, depth" in refused_by_job
