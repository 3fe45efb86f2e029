"""hpc-train as a package: `init`, `--version`, and a built wheel that works without the repository
(tests/wheel_venv.py builds and installs it; tests/slurm/test_wheel_on_slurm.py submits from it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO
from wheel_venv import install_wheel, run_cli

import hpc_train
from hpc_train.package_data import EXAMPLE_SPECS, example_spec, templates

HPC_TRAIN = Path(sys.executable).parent / "hpc-train"


def dev_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path), "HPC_TRAIN_HOME": str(tmp_path / "reg")}


def test_packaged_files_are_the_repository_folders() -> None:
    for name in ("sbatch.sh.j2", "_setup.sh.j2", "apptainer.def.j2"):
        assert (templates() / name).read_text() == (REPO / "templates" / name).read_text()
    for name in EXAMPLE_SPECS:
        assert example_spec(name) == (REPO / "configs" / f"{name}.yaml").read_text()


@pytest.mark.parametrize("example", EXAMPLE_SPECS)
def test_init_writes_an_example_that_validates(example: str, tmp_path: Path) -> None:
    # the reference example names a partition, account and QOS no test cluster has: no SLURM here
    env = {k: v for k, v in dev_env(tmp_path).items() if not k.startswith("SLURM_")}
    proc = run_cli([str(HPC_TRAIN), "init", example], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / f"{example}.yaml"
    assert written.read_text() == (REPO / "configs" / f"{example}.yaml").read_text()
    assert run_cli([str(HPC_TRAIN), "validate", "-q", written.name], tmp_path, env).returncode == 0


def test_init_into_a_folder_or_path_and_never_overwrites(tmp_path: Path) -> None:
    env = dev_env(tmp_path)
    (tmp_path / "specs").mkdir()
    assert run_cli([str(HPC_TRAIN), "init", "mlp", "specs"], tmp_path, env).returncode == 0
    assert yaml.safe_load((tmp_path / "specs" / "mlp.yaml").read_text())["name"] == "mlp-digits"
    assert run_cli([str(HPC_TRAIN), "init", "quickstart", "mine.yaml"], tmp_path, env).returncode == 0
    (tmp_path / "mine.yaml").write_text("name: edited\n")
    proc = run_cli([str(HPC_TRAIN), "init", "reference", "mine.yaml"], tmp_path, env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("hpc-train: error: mine.yaml: exists") and proc.stderr.count("\n") == 1
    assert (tmp_path / "mine.yaml").read_text() == "name: edited\n"
    proc = run_cli([str(HPC_TRAIN), "init", "nosuch"], tmp_path, env)
    assert proc.returncode == 2 and "invalid choice: 'nosuch'" in proc.stderr


def test_version(tmp_path: Path) -> None:
    proc = run_cli([str(HPC_TRAIN), "--version"], tmp_path, dev_env(tmp_path))
    assert proc.stdout.strip() == f"hpc-train {hpc_train.__version__}"


@pytest.mark.slow
def test_wheel_installed_in_a_new_venv_works_outside_the_repository(tmp_path: Path) -> None:
    wheel = install_wheel(tmp_path)
    shipped = {f"hpc_train/templates/{p.name}" for p in (REPO / "templates").iterdir()} | \
              {f"hpc_train/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
    assert shipped <= wheel.files, f"missing from the wheel: {sorted(shipped - wheel.files)}"
    work, env, cli = wheel.work, wheel.env, wheel.cli

    for argv in (["init", "quickstart"], ["validate", "-q", "quickstart.yaml"],
                 ["render", "quickstart.yaml", "-o", "rendered"]):
        proc = run_cli([cli, *argv], work, env)
        assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    script = (work / "rendered" / "job.sbatch").read_text()
    assert script.startswith("#!") and "#SBATCH --job-name=quickstart" in script
    proc = run_cli([cli, "run", "quickstart.yaml", "--run-dir", "run", "--json"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert (work / "run").is_dir() and json.loads(proc.stdout)["accuracy"] > 0.9
    proc = run_cli([cli, "submit", "quickstart.yaml", "--executor", "local"], work, env)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split()[-1]
    proc = run_cli([cli, "wait", job_id, "--timeout", "300"], work, env)
    assert proc.stdout.split() == [job_id, "completed"], proc.stdout + proc.stderr
