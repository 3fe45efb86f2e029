"""Fail before the queue: `validate` and `submit` check what the submitting host can see (data
files, scikit-learn hyperparameters, the model factory), exit 2 with the key named, and submit
nothing. `--no-check-data` lets data that exists only on the compute nodes through, never silently."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO

from hpc_train.cli.main import main
from hpc_train.registry import JobRegistry

RF = "name: t\nmodel: {type: random_forest}\n"
GOOD_CSV = "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(12))


@dataclass(frozen=True)
class Bad:
    id: str
    spec: str
    key: str
    fragments: tuple[str, ...]
    files: Callable[[Path], None] = lambda folder: None


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return make


def mkdir(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).mkdir()


def both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        for maker in makers:
            maker(folder)
    return make


BAD = [
    Bad("missing-train", RF + "data: {train_path: data/train.csv}\n", "data.train_path",
        ("data file not found", "data/train.csv", "relative to the spec file's folder", "--no-check-data")),
    Bad("missing-val", RF + "data: {train_path: train.csv, val_path: val.csv}\n", "data.val_path",
        ("data file not found", "'val.csv'"), write("train.csv", GOOD_CSV)),
    Bad("missing-absolute", RF + "data: {train_path: /nonexistent/hpc-train/train.csv}\n", "data.train_path",
        ("data file not found", "/nonexistent/hpc-train/train.csv")),
    Bad("train-is-a-folder", RF + "data: {train_path: train}\n", "data.train_path",
        ("directory, not a CSV file",), mkdir("train")),
    Bad("empty-csv", RF + "data: {train_path: train.csv}\n", "data.train_path", ("data file is empty",),
        write("train.csv", "")),
    Bad("blank-header", RF + "data: {train_path: train.csv}\n", "data.train_path", ("data file is empty",),
        write("train.csv", "\n\n\n")),
    Bad("not-utf8", RF + "data: {train_path: train.csv}\n", "data.train_path", ("not UTF-8",),
        write("train.csv", b"a,b,\xff\xfe\n1,2,3\n")),
    Bad("semicolon-separated", RF + "data: {train_path: train.csv}\n", "data.train_path",
        ("header has 1 column", "comma-separated"), write("train.csv", "a;b;label\n1;2;0\n3;4;1\n")),
    Bad("header-only", RF + "data: {train_path: train.csv}\n", "data.train_path",
        ("at least two data rows",), write("train.csv", "a,b,label\n1,2,0\n")),
    Bad("target-not-in-train", RF + "data: {train_path: train.csv, target: class}\n", "data.target",
        ("target column not in the header of train.csv", "'class'", "allowed: a, b, label"),
        write("train.csv", GOOD_CSV)),
    Bad("target-not-in-val", RF + "data: {train_path: train.csv, val_path: val.csv, target: label}\n",
        "data.target", ("not in the header of val.csv", "allowed: a, b, y"),
        both(write("train.csv", GOOD_CSV), write("val.csv", GOOD_CSV.replace("label", "y")))),
    Bad("n-estimators-words", "name: t\nmodel: {type: random_forest, hyperparameters: {n_estimators: ten}}\n",
        "model.hyperparameters.n_estimators", ("must be an int in the range [1, inf)", "got 'ten'")),
    Bad("max-depth-negative", "name: t\nmodel: {type: random_forest, hyperparameters: {max_depth: -1}}\n",
        "model.hyperparameters.max_depth", ("max_depth", "got -1")),
    Bad("criterion-unknown", "name: t\nmodel: {type: random_forest, hyperparameters: {criterion: best}}\n",
        "model.hyperparameters.criterion", ("'gini'", "got 'best'")),
    Bad("svm-c-text", "name: t\nmodel: {type: svm, hyperparameters: {C: high}}\n", "model.hyperparameters.C",
        ("'C' parameter of SVC", "got 'high'")),
    Bad("logistic-penalty", "name: t\nmodel: {type: logistic_regression, hyperparameters: {penalty: l3}}\n",
        "model.hyperparameters.penalty", ("'penalty' parameter", "got 'l3'")),
    Bad("gradient-boosting-loss", "name: t\nmodel: {type: gradient_boosting, hyperparameters: {loss: hinge}}\n",
        "model.hyperparameters.loss", ("'log_loss'", "got 'hinge'")),
    Bad("hyperparameter-name-typo", "name: t\nmodel: {type: random_forest, hyperparameters: {n_estimator: 5}}\n",
        "model.hyperparameters.n_estimator", ("unknown hyperparameter", "n_estimators")),
    Bad("factory-module-missing", "name: t\nmodel: {type: 'nosuchpkg.models:build'}\n", "model.type",
        ("cannot import nosuchpkg.models", "PYTHONPATH")),
    Bad("factory-attribute-missing", "name: t\nmodel: {type: 'tests.cli.fixtures:nothing'}\n", "model.type",
        ("has no attribute 'nothing'",)),
    Bad("factory-not-callable", "name: t\nmodel: {type: 'tests.cli.fixtures:NOT_A_FACTORY'}\n", "model.type",
        ("not callable",)),
    Bad("factory-arguments", "name: t\nmodel: {type: 'tests.cli.fixtures:tiny', hyperparameters: {depth: 3}}\n",
        "model.hyperparameters", ("cannot take these arguments", "depth", "its signature is (n_features, n_classes, width=8)")),
    Bad("grace-over-time", RF + "resources: {time: '00:01:30'}\npreemption: {grace_seconds: 120}\n",
        "preemption.grace_seconds", ("resources.time (0-00:01:30 = 90 s)",)),
    Bad("env-name-newline", RF + "resources: {env: {\"NCCL_SOCKET_IFNAME\\n\": ib0}}\n", "resources.env",
        ("not a valid shell name",)),
]


def run_verb(verb: str, spec: Path, *extra: str) -> list[str]:
    return [verb, str(spec), *extra, *(["--executor", "local"] if verb == "submit" else [])]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HPC_TRAIN_HOME", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "registry"


def test_there_are_enough_submit_time_bad_specs() -> None:
    assert len(BAD) >= 20 and len({case.id for case in BAD}) == len(BAD)


@pytest.mark.parametrize("verb", ["validate", "submit"])
@pytest.mark.parametrize("case", BAD, ids=lambda case: case.id)
def test_bad_spec_is_refused_before_the_queue(case: Bad, verb: str, tmp_path: Path, home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    case.files(folder)
    spec = folder / "job.yaml"
    spec.write_text(case.spec)
    assert main(run_verb(verb, spec)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"hpc-train: error: {spec}: {case.key}: "), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    for fragment in case.fragments:
        assert fragment in captured.err, f"{fragment!r} not in {captured.err!r}"
    assert not (tmp_path / "runs").exists() and not (folder / "runs").exists()
    assert not home.exists() or JobRegistry(home).list(top_level_only=False) == []


def test_no_check_data_lets_compute_node_data_through_but_still_checks_the_rest(
        tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(RF + "data: {train_path: /scratch/only-on-nodes/train.csv}\n")
    assert main(["validate", "-q", str(spec)]) == 2
    assert main(["validate", "-q", "--no-check-data", str(spec)]) == 0
    assert main(["submit", "--no-check-data", "--dry-run", "--executor", "local", str(spec)]) == 0
    assert capsys.readouterr().out.startswith("executor: local\n")
    spec.write_text(RF.replace("random_forest}", "random_forest, hyperparameters: {n_estimators: ten}}")
                    + "data: {train_path: /scratch/only-on-nodes/train.csv}\n")
    assert main(["validate", "-q", "--no-check-data", str(spec)]) == 2
    assert "model.hyperparameters.n_estimators" in capsys.readouterr().err


def test_good_data_and_factory_pass(tmp_path: Path, home: Path) -> None:
    (tmp_path / "train.csv").write_text(GOOD_CSV)
    (tmp_path / "val.csv").write_text(GOOD_CSV)
    spec = tmp_path / "job.yaml"
    spec.write_text(RF + "data: {train_path: train.csv, val_path: val.csv, target: label}\n")
    assert main(["validate", "-q", str(spec)]) == 0
    spec.write_text("name: t\nmodel: {type: 'tests.cli.fixtures:tiny', hyperparameters: {width: 4}}\n")
    assert main(["validate", "-q", str(spec)]) == 0


def test_a_factory_on_the_jobs_own_pythonpath_is_found(tmp_path: Path, home: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """resources.env.PYTHONPATH is the job's import path: the check imports from there too (relative
    entries from the spec's folder), and the folder is gone from sys.path afterwards."""
    models = tmp_path / "mymodels"
    models.mkdir()
    (models / "zoo_for_preflight.py").write_text("def build(n_features, n_classes, width=4):\n    return None\n")
    spec = tmp_path / "job.yaml"
    spec.write_text("name: t\nmodel: {type: 'zoo_for_preflight:build'}\n")
    assert main(["validate", "-q", str(spec)]) == 2
    assert "cannot import zoo_for_preflight" in capsys.readouterr().err
    spec.write_text("name: t\nmodel: {type: 'zoo_for_preflight:build'}\nresources: {env: {PYTHONPATH: mymodels}}\n")
    assert main(["validate", "-q", str(spec)]) == 0
    assert str(models) not in sys.path


def test_a_factory_inside_a_container_image_is_not_imported_here(tmp_path: Path, home: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: t\nmodel: {type: 'inimage.models:build'}\ncontainer: {image: train.sif}\n")
    assert main(["validate", "-q", str(spec)]) == 0


def test_unreadable_data_file(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "train.csv"
    data.write_text(GOOD_CSV)
    data.chmod(0)
    if os.geteuid() == 0:
        # root reads any file whatever its mode: fake the refusal the kernel gives every other user
        real_open = Path.open

        def refusing_open(self: Path, *args: object, **kwargs: object) -> object:
            if self == data:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "open", refusing_open)
    spec = tmp_path / "job.yaml"
    spec.write_text(RF + "data: {train_path: train.csv}\n")
    for verb in ("validate", "submit"):
        assert main(run_verb(verb, spec)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"hpc-train: error: {spec}: data.train_path: data file is not readable"), err
        assert f"chmod u+r {data}" in err and "--no-check-data" in err


def test_submit_refuses_through_the_console_script(tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: t\nmodel: {type: random_forest, hyperparameters: {n_estimators: ten}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HPC_TRAIN_HOME": str(tmp_path / "registry")}
    proc = subprocess.run([str(Path(sys.executable).parent / "hpc-train"), "submit", str(spec), "--executor",
                           "local"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"hpc-train: error: {spec}: model.hyperparameters.n_estimators: ")
    assert not (tmp_path / "runs").exists()
