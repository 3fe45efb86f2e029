"""hpc-train as a package: `init`, `--version`, and a built wheel that works without the repository.

The wheel test builds the wheel, installs it into a new venv and uses it from a folder that is not
the repository. The new venv sees the dependencies through a .pth file listing this environment's
site-packages, written after the install: tests have no network beyond the package index, and
torch (hundreds of MB) must not be downloaded again. The .pth adds that folder as a plain path, so
its own .pth files (the editable install of this checkout) are not run and cannot hide the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml
from support import REPO

import hpc_train
from hpc_train.package_data import EXAMPLE_SPECS, example_spec, templates

HPC_TRAIN = Path(sys.executable).parent / "hpc-train"


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # output to files, as with `> out.txt`: a local submit's job would hold a pipe open until it ends
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=err, timeout=timeout,
                              check=False).returncode
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(argv, code, out.read(), err.read())
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    return proc


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


def source_copy(target: Path) -> Path:
    """The files git would hold (symbolic links kept), so that building leaves the checkout alone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.exists() and not source.is_symlink():  # deleted in the work tree, not yet in git
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)
    return target


@pytest.mark.slow
def test_wheel_installed_in_a_new_venv_works_outside_the_repository(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPC_TRAIN_TEMPLATES")
             and not k.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_"))}
    source = source_copy(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, cwd=tmp_path, env=clean, timeout=300)
    (wheel,) = wheels.glob("hpc_train-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"hpc_train/templates/{p.name}" for p in (REPO / "templates").iterdir()} | \
              {f"hpc_train/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps", str(wheel)],
                   check=True, env=clean, timeout=300)
    new_site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (new_site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    env = dict(clean, HOME=str(tmp_path), HPC_TRAIN_HOME=str(tmp_path / "registry"), OMP_NUM_THREADS="1")
    cli = str(venv / "bin" / "hpc-train")
    where = run_cli([str(venv / "bin" / "python"), "-c", "import hpc_train; print(hpc_train.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

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
