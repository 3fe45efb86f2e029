"""`hpc-train doctor` without SLURM: the parsers of what tools print, a machine whose PATH has no
SLURM, MPI or Apptainer (absent optional parts are skipped, absent needed ones fail with a hint),
a stand-in `apptainer` (Apptainer is not installable here, see FACTS.md), and `sbatch --test-only`
refusals mapped to spec keys. The same checks against the real cluster: tests/slurm/test_doctor_on_cluster.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import PYTHON, REPO

from hpc_train.doctor.checks import mpi_identity, parse_check_build
from hpc_train.scheduler.test_only import PartitionInfo, explain_refusal, gpus_per_node, parse_partitions
from hpc_train.spec import load_spec

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
QUICKSTART = REPO / "configs" / "quickstart.yaml"

CHECK_BUILD = """Horovod v0.28.1:

Available Frameworks:
    [ ] TensorFlow
    [X] PyTorch
    [ ] MXNet

Available Controllers:
    [X] MPI
    [X] Gloo

Available Tensor Operations:
    [X] NCCL
    [ ] DDL
    [ ] CCL
    [X] MPI
    [X] Gloo
"""


def test_parse_check_build() -> None:
    assert parse_check_build(CHECK_BUILD) == {
        "Available Frameworks": ["PyTorch"], "Available Controllers": ["MPI", "Gloo"],
        "Available Tensor Operations": ["NCCL", "MPI", "Gloo"]}


@pytest.mark.parametrize(("text", "identity"), [
    ("mpirun (Open MPI) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/", ("Open MPI", "4.1.4")),
    ("Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4", ("Open MPI", "4.1.4")),
    ("HYDRA build details:\n    Version:                                 4.0.2", None),
    ("MPICH Version:\t4.0.2\nMPICH Release date:\tThu Apr  7 12:34:45 CDT 2022", ("MPICH", "4.0.2")),
    ("Intel(R) MPI Library 2021.6 for Linux* OS", ("Intel MPI", "2021.6")),
])
def test_mpi_identity(text: str, identity: tuple[str, str] | None) -> None:
    assert mpi_identity(text) == identity


def test_partitions_and_gres() -> None:
    text = "debug*|2|2|16000|(null)|infinite\ngpu|3|64|512000|gpu:a100:4(S:0-1)|2-00:00:00\ngpu|1|32|256000|gpu:2|2-00:00:00\n"
    found = parse_partitions(text)
    assert found["debug"] == PartitionInfo("debug", 2, 2, 16000, "(null)", "infinite", True)
    assert (found["gpu"].nodes, found["gpu"].cpus, found["gpu"].default) == (4, 64, False)
    assert gpus_per_node("gpu:a100:4(S:0-1),gpu:v100:2") == 6
    assert gpus_per_node("(null)") == 0


KNOWN = parse_partitions("debug*|2|2|16000|(null)|1:00:00\nlong|2|2|16000|(null)|infinite\n")


@pytest.mark.parametrize(("said", "key", "in_hint"), [
    ("sbatch: error: invalid partition specified: nope\nallocation failure: Invalid partition name specified",
     "resources.partition", "partitions on this cluster: debug, long"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     "resources.account", "sacctmgr"),
    ("sbatch: error: Batch job submission failed: Invalid qos specification", "resources.qos", "sacctmgr"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)",
     "resources.time", "debug: 1:00:00"),
    ("sbatch: error: Invalid generic resource (gres) specification", "resources.gpus_per_node", "debug: none"),
    ("allocation failure: Invalid feature specification", "resources.constraint", "sinfo"),
    ("allocation failure: Requested node configuration is not available", "resources.memory", "16000 MB"),
    ("sbatch: error: something new", "resources", "sbatch --test-only"),
])
def test_refusals_name_the_key(said: str, key: str, in_hint: str) -> None:
    spec = load_spec(QUICKSTART, ["resources.memory=900GB", "resources.time=02:00:00"])
    error = explain_refusal(spec, said, KNOWN)
    assert error.key == key
    assert in_hint in (error.hint or "")
    assert said.splitlines()[-1].strip() in str(error)


def doctor(tmp_path: Path, *args: str, path: Path) -> tuple[int, dict[str, dict[str, object]]]:
    """`hpc-train doctor --json ARGS` with PATH=path: (exit code, checks by name)."""
    env = {**os.environ, "PATH": str(path), "HPC_TRAIN_HOME": str(tmp_path / "home")}
    proc = subprocess.run([HPC_TRAIN, "doctor", "--json", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path, check=False)
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] == (proc.returncode == 0)
    assert report["failed"] == [c["name"] for c in report["checks"] if c["status"] == "fail"]
    return proc.returncode, {c["name"]: c for c in report["checks"]}


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A PATH with no SLURM, MPI or Apptainer on it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def test_no_slurm_no_spec_is_healthy(tmp_path: Path, bare_path: Path) -> None:
    code, checks = doctor(tmp_path, "--check", "slurm", "--check", "mpi", "--check", "apptainer",
                          "--check", "registry", "--check", "filesystem", path=bare_path)
    assert code == 0
    assert checks["SLURM client"]["status"] == "skip"
    assert checks["MPI (mpirun, mpi4py)"]["status"] == "skip"
    assert checks["Apptainer"]["status"] == "skip"
    assert checks["registry"]["status"] == "ok"
    assert str(tmp_path / "home") in str(checks["registry"]["detail"])
    assert checks["checkpoint filesystem"]["status"] in ("ok", "warn")


def test_spec_needs_what_is_absent(tmp_path: Path, bare_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(QUICKSTART.read_text() + "container: {image: img.sif}\n")
    code, checks = doctor(tmp_path, "--spec", str(spec), "--set", "resources.partition=gpu",
                          "--set", "distributed.backend=mpi", "--check", "slurm", "--check", "mpi",
                          "--check", "apptainer", "--check", "spec", path=bare_path)
    assert code == 1
    for name, hint in [("SLURM client", "SLURM login node"), ("MPI (mpirun, mpi4py)", "OpenMPI"),
                       ("Apptainer", "Apptainer"), ("spec: partition", "SLURM lines above")]:
        assert checks[name]["status"] == "fail", checks[name]
        assert hint in str(checks[name]["hint"])


def test_stand_in_apptainer(tmp_path: Path, bare_path: Path) -> None:
    # Apptainer cannot be installed here (FACTS.md): a stand-in that answers --version like it does
    stand_in = bare_path / "apptainer"
    stand_in.write_text("#!/bin/sh\necho 'apptainer version 1.3.4'\n")
    stand_in.chmod(0o755)
    spec = tmp_path / "job.yaml"
    spec.write_text(QUICKSTART.read_text() + "container: {image: img.sif}\n")
    code, checks = doctor(tmp_path, "--spec", str(spec), "--check", "apptainer", path=bare_path)
    assert code == 0
    assert checks["Apptainer"] == {"name": "Apptainer", "status": "ok", "ok": True, "hint": None,
                                   "detail": "apptainer: apptainer version 1.3.4"}


def test_unknown_check_and_bad_spec_exit_2(tmp_path: Path, bare_path: Path) -> None:
    env = {**os.environ, "PATH": str(bare_path), "HPC_TRAIN_HOME": str(tmp_path / "home")}
    for args in (["--check", "nope"], ["--spec", str(tmp_path / "missing.yaml")]):
        proc = subprocess.run([HPC_TRAIN, "doctor", *args], capture_output=True, text=True, timeout=120,
                              env=env, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and "hpc-train: error:" in proc.stderr
