"""Bad specs are refused at the door with one message naming the file, the key path, the bad value
and what is allowed; through the CLI that is exit 2 and no traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hpc_train.cli.main import main
from hpc_train.errors import SpecError
from hpc_train.spec import load_spec, parse_spec

HEAD = "name: t\nmodel: {type: random_forest}\n"
TORCH = "name: t\nmodel: {type: neural_network}\n"


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    key: str | None
    fragments: tuple[str, ...]


def bad(id: str, text: str, key: str | None, *fragments: str) -> Bad:
    return Bad(id, text, key, fragments)


BAD_SPECS = [
    bad("features-and-drop", HEAD + "data: {train_path: d.csv, features: [a], drop: [b]}\n", "data.drop",
        "not both", "['b']"),
    bad("drop-on-sklearn-data", HEAD + "data: {drop: [a]}\n", "data.drop", "needs a CSV file", "sklearn:digits"),
    bad("features-twice", HEAD + "data: {train_path: d.csv, features: [a, a]}\n", "data.features",
        "listed twice"),
    bad("features-empty", HEAD + "data: {train_path: d.csv, features: []}\n", "data.features", "at least 1"),
    bad("unknown-top-level-key", HEAD + "nmae: x\n", "nmae", "unknown key", "did you mean 'name'?",
        "allowed: name, model, data"),
    bad("unknown-top-level-section", HEAD + "scheduler: {x: 1}\n", "scheduler", "unknown key", "resources"),
    bad("unknown-nested-key", HEAD + "resources: {gpu_per_node: 1}\n", "resources.gpu_per_node",
        "did you mean 'gpus_per_node'?", "cpus_per_task"),
    bad("unknown-training-key", HEAD + "training: {epoch: 3}\n", "training.epoch", "did you mean 'epochs'?"),
    bad("unknown-model-key", "name: t\nmodel: {type: svm, hyperparams: {C: 1}}\n", "model.hyperparams",
        "did you mean 'hyperparameters'?"),
    bad("unknown-deep-key", TORCH + "training: {early_stopping: {patients: 3}}\n",
        "training.early_stopping.patients", "did you mean 'patience'?"),
    bad("epochs-not-int", HEAD + "training: {epochs: many}\n", "training.epochs", "valid integer", "'many'"),
    bad("nodes-fraction", HEAD + "resources: {nodes: 1.5}\n", "resources.nodes", "fractional part"),
    bad("negative-nodes", HEAD + "resources: {nodes: -1}\n", "resources.nodes", "greater than or equal to 1",
        "got -1"),
    bad("zero-cpus", HEAD + "resources: {cpus_per_task: 0}\n", "resources.cpus_per_task",
        "greater than or equal to 1"),
    bad("negative-gpus", TORCH + "resources: {gpus_per_node: -2}\n", "resources.gpus_per_node",
        "greater than or equal to 0"),
    bad("memory-unit", HEAD + "resources: {memory: 8XB}\n", "resources.memory", "'8XB'", "8GB, 8G, 8192M"),
    bad("memory-zero", HEAD + "resources: {memory: 0}\n", "resources.memory", "positive"),
    bad("memory-bool", HEAD + "resources: {memory: true}\n", "resources.memory", "not a boolean"),
    bad("time-minutes-61", HEAD + "resources: {time: '25:61:00'}\n", "resources.time", ">= 60",
        "HH:MM:SS, D-HH:MM:SS"),
    bad("time-words", HEAD + "resources: {time: soon}\n", "resources.time", "'soon'", "minutes (e.g. 90)"),
    bad("time-zero", HEAD + "resources: {time: 0}\n", "resources.time", "positive"),
    bad("unknown-model-type", "name: t\nmodel: {type: xgboost}\n", "model.type", "'xgboost'", "random_forest",
        "neural_network", "package.module:factory"),
    bad("model-type-missing", "name: t\nmodel: {hyperparameters: {}}\n", "model.type",
        "required key is missing"),
    bad("dropout-one", TORCH.replace("}", ", dropout: 1.0}"), "model.dropout", "less than 1"),
    bad("hidden-size-zero", TORCH.replace("}", ", hidden_sizes: [64, 0]}"), "model.hidden_sizes.1",
        "greater than 0"),
    bad("unknown-sklearn-dataset", HEAD + "data: {train_path: 'sklearn:mnist'}\n", "data.train_path",
        "'sklearn:mnist'", "sklearn:digits, sklearn:iris, sklearn:wine, sklearn:breast_cancer", "CSV path"),
    bad("val-fraction", HEAD + "data: {val_fraction: 1.5}\n", "data.val_fraction", "less than 1"),
    bad("empty-train-path", HEAD + "data: {train_path: ''}\n", "data.train_path", "at least 1 character"),
    bad("bad-optimizer", TORCH + "training: {optimizer: rmsprop}\n", "training.optimizer", "'adam'", "'sgd'"),
    bad("bad-early-stopping-metric", TORCH + "training: {early_stopping: {metric: f1}}\n",
        "training.early_stopping.metric", "'val_loss'", "'val_accuracy'"),
    bad("bad-strategy", TORCH + "distributed: {strategy: dpp}\n", "distributed.strategy", "'dpp'", "'ddp'",
        "'horovod'", "'fsdp'"),
    bad("bad-backend", TORCH + "distributed: {backend: cuda}\n", "distributed.backend", "'gloo'", "'nccl'"),
    bad("nccl-without-gpus", TORCH + "distributed: {backend: nccl}\n", "distributed.backend",
        "needs GPUs", "allowed: auto, gloo, mpi", "gpus_per_node >= 1"),
    bad("data-parallel-multi-node", TORCH + "distributed: {strategy: data_parallel}\nresources: {nodes: 2}\n",
        "distributed.strategy", "use strategy: ddp"),
    bad("sklearn-several-ranks", HEAD + "resources: {tasks_per_node: 2}\n", "resources.tasks_per_node",
        "one process", "neural_network"),
    bad("sklearn-several-nodes", HEAD + "resources: {nodes: 3}\n", "resources.nodes", "one process", "got 3"),
    bad("partition-with-spaces", HEAD + "resources: {partition: 'my partition'}\n", "resources.partition",
        "letters, digits and _ . + -"),
    bad("account-substitution", HEAD + "resources: {account: '$(whoami)'}\n", "resources.account",
        "letters, digits"),
    bad("qos-quote", HEAD + "resources: {qos: \"it's\"}\n", "resources.qos", "letters, digits"),
    bad("constraint-space", HEAD + "resources: {constraint: 'gpu a100'}\n", "resources.constraint",
        "gpu&a100", "no spaces"),
    bad("name-with-slash", "name: a/b\nmodel: {type: svm}\n", "name", "letters, digits"),
    bad("name-not-string", "name: 42\nmodel: {type: svm}\n", "name", "valid string"),
    bad("env-name-invalid", HEAD + "resources: {env: {1BAD: x}}\n", "resources.env", "'1BAD'",
        "not a valid shell name"),
    bad("env-name-dash", HEAD + "resources: {env: {MY-VAR: x}}\n", "resources.env", "'MY-VAR'"),
    bad("env-value-not-string", HEAD + "resources: {env: {OMP_PLACES: 4}}\n", "resources.env.OMP_PLACES",
        "valid string"),
    bad("env-value-newline", HEAD + "resources: {env: {A: \"x\\ny\"}}\n", "resources.env",
        "control character"),
    bad("modules-not-list", HEAD + "resources: {modules: cuda}\n", "resources.modules", "valid list"),
    bad("extra-sbatch-not-option", HEAD + "resources: {extra_sbatch: [exclusive]}\n",
        "resources.extra_sbatch", "'exclusive'", "like --exclusive"),
    bad("extra-sbatch-short-option", HEAD + "resources: {extra_sbatch: ['-N 2']}\n", "resources.extra_sbatch",
        "one long option"),
    bad("gres-with-gpus", TORCH + "resources: {gpus_per_node: 1, extra_sbatch: ['--gres=gpu:1']}\n",
        "resources.extra_sbatch", "--gpus-per-node", "HINT"),
    bad("container-without-image", HEAD + "container: {binds: [/data]}\n", "container.image",
        "required key is missing"),
    bad("container-bootstrap", HEAD + "container: {image: x.sif, bootstrap: podman}\n", "container.bootstrap",
        "'docker'", "'localimage'"),
    bad("container-not-mapping", HEAD + "container: x.sif\n", "container", "valid dictionary"),
    bad("checkpoint-unit", HEAD + "checkpoint: {unit: minutes}\n", "checkpoint.unit", "'epochs'", "'steps'"),
    bad("checkpoint-keep-zero", HEAD + "checkpoint: {keep_last: 0}\n", "checkpoint.keep_last",
        "greater than or equal to 1"),
    bad("preemption-signal", HEAD + "preemption: {signal: KILL}\n", "preemption.signal", "'USR1'", "'TERM'"),
    bad("preemption-grace", HEAD + "preemption: {grace_seconds: 0}\n", "preemption.grace_seconds",
        "greater than or equal to 1"),
    bad("empty-sweep-param-space", HEAD + "sweep: {param_space: {}}\n", "sweep.param_space",
        "at least 1 item"),
    bad("sweep-param-without-values", HEAD + "sweep: {param_space: {max_depth: []}}\n", "sweep.param_space",
        "param_space.max_depth is empty", "at least one value"),
    bad("sweep-param-not-list", HEAD + "sweep: {param_space: {max_depth: 3}}\n",
        "sweep.param_space.max_depth", "give a list of values, or a range"),
    bad("sweep-cv-one", HEAD + "sweep: {cv: 1, param_space: {max_depth: [3]}}\n", "sweep.cv",
        "greater than or equal to 2"),
    bad("sweep-metric", HEAD + "sweep: {metric: auc, param_space: {max_depth: [3]}}\n", "sweep.metric",
        "'auc'", "accuracy, f1_score, precision, recall, loss"),
    bad("sweep-strategy", HEAD + "sweep: {strategy: hyperband, param_space: {max_depth: [3]}}\n",
        "sweep.strategy", "'grid'", "'bayesian'"),
    bad("sweep-without-space", HEAD + "sweep: {strategy: grid}\n", "sweep.param_space",
        "required key is missing"),
    bad("output-dir-newline", HEAD + "output_dir: \"runs\\nrm -rf ~\"\n", "output_dir", "control character"),
    bad("missing-name", "model: {type: svm}\n", "name", "required key is missing", "allowed: name, model"),
    bad("missing-model", "name: t\n", "model", "required key is missing"),
    bad("top-level-list", "- name: t\n- model: {type: svm}\n", None, "must be a YAML mapping",
        "allowed: name, model"),
    bad("top-level-scalar", "just a string\n", None, "must be a YAML mapping", "'just a string'"),
    bad("empty-document", "", None, "must be a YAML mapping", "got None"),
    bad("yaml-syntax-error", "name: t\nmodel: {type: svm\nresources: {nodes: 1}\n", None, "invalid YAML",
        "line 3", "HINT: check indentation"),
    bad("yaml-tab-indent", "name: t\nmodel:\n\ttype: svm\n", None, "invalid YAML", "line 3"),
    bad("yaml-python-tag", "name: !!python/object:os.system t\nmodel: {type: svm}\n", None, "invalid YAML",
        "line 1"),
    # `$` in a pattern matches before a final newline: name-like fields must match whole
    bad("env-name-trailing-newline", HEAD + "resources: {env: {\"NCCL_SOCKET_IFNAME\\n\": ib0}}\n", "resources.env",
        "'NCCL_SOCKET_IFNAME\\n'", "not a valid shell name"),
    bad("name-block-scalar", "name: |\n  myjob\nmodel: {type: svm}\n", "name", "letters, digits", "'myjob\\n'"),
    bad("partition-block-scalar", HEAD + "resources:\n  partition: |\n    gpu\n", "resources.partition",
        "letters, digits"),
    bad("account-trailing-newline", HEAD + "resources: {account: \"lab\\n\"}\n", "resources.account",
        "letters, digits"),
    bad("qos-trailing-newline", HEAD + "resources: {qos: \"high\\n\"}\n", "resources.qos", "letters, digits"),
    bad("constraint-trailing-newline", HEAD + "resources: {constraint: \"a100\\n\"}\n", "resources.constraint",
        "no spaces"),
    bad("factory-trailing-newline", "name: t\nmodel: {type: \"mypkg.models:build\\n\"}\n", "model.type",
        "package.module:factory"),
    bad("grace-equals-time", HEAD + "resources: {time: '00:02:00'}\npreemption: {grace_seconds: 120}\n",
        "preemption.grace_seconds", "(120 s) must be shorter than resources.time (0-00:02:00 = 120 s)",
        "HINT: lower preemption.grace_seconds or raise resources.time"),
    bad("grace-over-time", HEAD + "resources: {time: 1}\n", "preemption.grace_seconds",
        "preemption.grace_seconds (120 s)", "resources.time (0-00:01:00 = 60 s)"),
    bad("two-problems-counted", "name: 'a b'\nmodel: {type: svm, bogus: 1}\n", "name", "and 1 more problem"),
]


@pytest.mark.parametrize("case", BAD_SPECS, ids=lambda case: case.id)
def test_bad_spec_names_key_and_allowed_values(case: Bad, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(case.text)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert message.startswith(str(path)), message
    assert error.value.key == case.key
    if case.key:
        assert f": {case.key}: " in message
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_there_are_enough_bad_specs() -> None:
    assert len(BAD_SPECS) >= 30 and len({case.id for case in BAD_SPECS}) == len(BAD_SPECS)


CLI_CASES = [*BAD_SPECS[::7], *(case for case in BAD_SPECS if case.id in ("env-name-trailing-newline",
                                                                           "grace-equals-time"))]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda case: case.id)
def test_cli_validate_bad_spec_exits_2_without_traceback(case: Bad, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(case.text)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"hpc-train: error: {path}")
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1
    for fragment in case.fragments:
        assert fragment in captured.err


# -- the file itself


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found") as error:
        load_spec(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(error.value) and "HINT" in str(error.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="directory, not a YAML file") as error:
        load_spec(tmp_path)
    assert str(error.value).startswith(str(tmp_path))


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\u00e9\nmodel: {type: svm}\n".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8") as error:
        load_spec(path)
    assert str(path) in str(error.value)


def test_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\n" + HEAD)
    with pytest.raises(SpecError, match="larger than 1 MiB"):
        load_spec(path)


def test_unreadable_file(tmp_path: Path) -> None:
    import os

    path = tmp_path / "secret.yaml"
    path.write_text(HEAD)
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as a user who can read anything (root)")
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(path)


@pytest.mark.parametrize("argv_tail,fragment", [
    (["missing.yaml"], "spec file not found"),
    (["."], "directory"),
])
def test_cli_file_problems_exit_2(argv_tail: list[str], fragment: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["validate", *argv_tail]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


# -- mistakes found only when the job starts (the data, the estimator), still exit 2 with the key


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            text: str) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(write_spec(tmp_path, text)), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_run_unknown_random_forest_hyperparameter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(tmp_path, monkeypatch, capsys,
                        "name: t\nmodel: {type: random_forest, hyperparameters: {n_estimatorz: 10}}\n")
    assert code == 2
    assert f"{tmp_path / 'spec.yaml'}: model.hyperparameters.n_estimatorz" in err
    assert "n_estimators" in err and "max_depth" in err  # the valid names are listed


def test_run_missing_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(tmp_path, monkeypatch, capsys, HEAD + "data: {train_path: no/such.csv}\n")
    assert code == 2
    assert f"{tmp_path / 'spec.yaml'}: data.train_path: data file not found" in err
    assert "no/such.csv'" in err and "HINT" in err


def test_run_csv_with_non_numeric_feature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,oops,y\n4,5,x\n")
    code, err = run_cli(tmp_path, monkeypatch, capsys, HEAD + "data: {train_path: d.csv}\n")
    assert code == 2
    assert "data.train_path" in err and "line 3, column 'b' holds 'oops', not a number" in err
    assert "data.drop: [b]" in err  # the hint names the way out


def test_run_csv_target_not_in_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,4,y\n4,5,x\n")
    code, err = run_cli(tmp_path, monkeypatch, capsys, HEAD + "data: {train_path: d.csv, target: class}\n")
    assert code == 2
    assert "data.target" in err and "allowed: a, b, label" in err


def test_run_bad_hyperparameter_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(tmp_path, monkeypatch, capsys,
                        "name: t\nmodel: {type: random_forest, hyperparameters: {n_estimators: -3}}\n")
    assert code == 2
    assert "model.hyperparameters" in err and "n_estimators" in err


# -- overrides


@pytest.mark.parametrize("override,key,fragment", [
    ("training.epoch=3", "training.epoch", "did you mean 'epochs'?"),
    ("resources.nodes=zero", "resources.nodes", "valid integer"),
    ("name.first=x", "name", "not a mapping"),
    ("model.type.module=x", "model.type", "not a mapping"),
    ("no-equals-sign", None, "key.path=value"),
    ("=5", None, "key.path=value"),
])
def test_bad_override(override: str, key: str | None, fragment: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(HEAD, overrides=[override])
    assert error.value.key == key
    assert fragment in str(error.value)


@pytest.mark.parametrize("document", ["- a\n- b\n", "", "just text\n"])
def test_override_on_a_document_that_is_not_a_mapping(document: str) -> None:
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        parse_spec(document, overrides=["training.epochs=3"])


def test_cli_bad_override_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec(tmp_path, HEAD)
    assert main(["validate", str(path), "--set", "name.x=1"]) == 2
    err = capsys.readouterr().err
    assert "--set: name" in err and "Traceback" not in err
