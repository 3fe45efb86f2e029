"""`hpc-train doctor` against the local SLURM cluster: every check that applies here passes; an
unreachable controller, an srun without PMIx and a spec's missing partition or GPUs each fail
their own line with its hint, and doctor exits 1.

Nothing touches the shared cluster: the unreachable controller is a copy of slurm.conf with another
SlurmctldPort (the `unreachable_conf` fixture), and the srun without PMIx is a stand-in earlier on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from support import PYTHON, REPO, SlurmCluster
from test_scheduler_errors import client_env, unreachable_conf  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slurm

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
QUICKSTART = REPO / "configs" / "quickstart.yaml"
SLURM_CHECKS = ("SLURM client", "SLURM controller", "accounting (sacct)", "partitions (sinfo)", "srun PMIx")


def doctor(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[int, dict[str, dict[str, object]], float]:
    """`hpc-train doctor --json ARGS`: (exit code, checks by name, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run([HPC_TRAIN, "--home", str(tmp_path / "home"), "doctor", "--json", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False)
    seconds = time.monotonic() - t0
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] == (proc.returncode == 0)
    return proc.returncode, {c["name"]: c for c in report["checks"]}, seconds


def test_all_checks_pass_on_the_test_cluster(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    code, checks, _ = doctor(tmp_path, "--spec", str(QUICKSTART), env=client_env())
    assert code == 0, {name: c for name, c in checks.items() if c["status"] == "fail"}
    for name in (*SLURM_CHECKS, "spec: partition", "registry"):
        assert checks[name]["status"] == "ok", checks[name]
    assert "debug*" in str(checks["partitions (sinfo)"]["detail"])
    assert "partition debug (the default) exists, 2 nodes" in str(checks["spec: partition"]["detail"])
    # what applies on this machine: OpenMPI with a matching mpi4py, Horovod with PyTorch
    assert checks["MPI (mpirun, mpi4py)"]["status"] == "ok"
    if checks["Horovod"]["status"] != "skip":
        assert "PyTorch" in str(checks["Horovod"]["detail"])
    # the quickstart has no container: Apptainer's absence is not a failure
    assert checks["Apptainer"]["status"] in ("ok", "skip")


def test_text_report_one_line_per_check(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    proc = subprocess.run([HPC_TRAIN, "--home", str(tmp_path / "home"), "doctor", "--check", "slurm",
                           "--check", "partitions"], capture_output=True, text=True, timeout=120,
                          env=client_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "✓ SLURM client", "✓ SLURM controller", "✓ partitions (sinfo)"]
    assert lines[-1] == "no problems found"


def test_unreachable_controller(slurm_cluster: SlurmCluster, tmp_path: Path,
                                unreachable_conf: Path) -> None:  # noqa: F811
    code, checks, seconds = doctor(tmp_path, "--spec", str(QUICKSTART), "--check", "slurm",
                                   "--check", "partition", "--check", "spec",
                                   env=client_env(SLURM_CONF=str(unreachable_conf)))
    assert code == 1
    controller = checks["SLURM controller"]
    assert controller["status"] == "fail" and "DOWN" in str(controller["detail"])
    assert "slurmctld" in str(controller["hint"])
    # lines that need the controller say so instead of waiting for sinfo's retries
    assert checks["partitions (sinfo)"]["status"] == "skip"
    assert seconds < 30


def test_srun_without_pmix(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    stand_in = tmp_path / "bin" / "srun"
    stand_in.parent.mkdir()
    # what an srun built without the PMIx plugin prints
    stand_in.write_text("#!/bin/sh\nprintf 'MPI plugin types are...\\n\\tnone\\n\\tpmi2\\n\\tcray_shasta\\n' >&2\n")
    stand_in.chmod(0o755)
    env = client_env(PATH=f"{stand_in.parent}{os.pathsep}{os.environ['PATH']}")
    code, checks, _ = doctor(tmp_path, "--check", "srun", "--check", "SLURM", env=env)
    assert code == 1
    assert checks["SLURM controller"]["status"] == "ok"
    srun = checks["srun PMIx"]
    assert srun["status"] == "fail" and "has no pmix" in str(srun["detail"]) and "pmi2" in str(srun["detail"])
    assert "--mpi=pmix" in str(srun["hint"])


def test_spec_partition_missing(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    code, checks, _ = doctor(tmp_path, "--spec", str(QUICKSTART), "--set", "resources.partition=nope",
                             "--check", "spec", "--check", "partitions", env=client_env())
    assert code == 1
    line = checks["spec: partition"]
    assert line["status"] == "fail" and "'nope' is not on this cluster" in str(line["detail"])
    assert line["hint"] == "partitions on this cluster: debug, long, urgent"
    assert checks["partitions (sinfo)"]["status"] == "ok"


def test_spec_gpus_missing(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    code, checks, _ = doctor(tmp_path, "--spec", str(REPO / "configs" / "mlp.yaml"),
                             "--set", "resources.gpus_per_node=1", "--check", "spec", env=client_env())
    assert code == 1
    line = checks["spec: GPUs"]
    assert line["status"] == "fail" and "partition debug has no GPUs" in str(line["detail"])
    assert "partitions with GPUs: none on this cluster" in str(line["hint"])
    assert checks["spec: partition"]["status"] == "ok"
