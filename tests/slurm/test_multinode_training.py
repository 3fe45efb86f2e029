"""Torch training across the local cluster's two nodes: one rank on n1, one on n2, started by srun
(submitit) or by the rendered sbatch script; ddp (gloo, or gradients over MPI with backend mpi) and horovod
end with identical parameters."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import REPO, SlurmCluster

HPC_TRAIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "hpc-train"
if not HPC_TRAIN.exists():
    HPC_TRAIN = REPO / ".venv" / "bin" / "hpc-train"

pytestmark = [pytest.mark.slurm, pytest.mark.mpi]


def _cli(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HPC_TRAIN_HOME": str(tmp_path / "home"), "OMPI_MCA_mpi_yield_when_idle": "1"}
    return subprocess.run([str(HPC_TRAIN), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize(("strategy", "backend", "executor"),
                         [("ddp", "gloo", "slurm"), ("ddp", "mpi", "slurm"), ("horovod", "auto", "sbatch")])
def test_two_node_job_trains_identical_parameters_on_n1_and_n2(
        slurm_cluster: SlurmCluster, tmp_path: Path, strategy: str, backend: str, executor: str) -> None:
    submitted = _cli(tmp_path, "submit", str(REPO / "configs" / "mlp.yaml"), "--executor", executor,
                     "--set", "resources.nodes=2", "--set", "resources.tasks_per_node=1",
                     "--set", f"distributed.strategy={strategy}", "--set", f"distributed.backend={backend}",
                     "--set", "training.epochs=3",
                     "--set", "training.early_stopping=null")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split()[-1]
    waited = _cli(tmp_path, "wait", job_id, "--timeout", "420")
    logs = _cli(tmp_path, "logs", job_id).stdout[-3000:]
    assert waited.returncode == 0, f"{waited.stdout}\n{waited.stderr}\n{logs}"
    results = json.loads(_cli(tmp_path, "results", job_id, "--json").stdout)
    assert results["world_size"] == 2 and results["strategy"] == strategy
    if strategy == "ddp":
        assert results["backend"] == backend
    assert sorted(results["hosts"]) == ["n1", "n2"], results["hosts"]
    assert len(results["param_digests"]) == 2 and len(set(results["param_digests"])) == 1
    assert results["accuracy"] > 0.85
