"""`hpc-train launch -np 2 SPEC` end to end: configs/mlp.yaml on two local ranks under mpirun, for each
strategy; the ranks agree, the model is accurate, and rerunning the finished launch resumes (trains nothing)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ranks import require_horovod
from support import PYTHON, REPO, require_mpirun

pytestmark = pytest.mark.mpi

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
SPEC = REPO / "configs" / "mlp.yaml"


@pytest.mark.parametrize("strategy", [
    pytest.param("ddp", id="ddp"),
    pytest.param("horovod", id="horovod", marks=pytest.mark.horovod),
    pytest.param("fsdp", id="fsdp"),
])
def test_launch_trains_a_spec_on_two_ranks(strategy: str, tmp_path: Path) -> None:
    require_mpirun()
    if strategy == "horovod":
        require_horovod()
    run_dir = tmp_path / "run"
    argv = [HPC_TRAIN, "--home", str(tmp_path / "home"), "launch", "-np", "2", str(SPEC), "--run-dir", str(run_dir),
            "--set", f"distributed.strategy={strategy}", "--set", "training.epochs=6",
            "--set", "training.early_stopping=null"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_"))}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["strategy"] == {"fsdp": "model_parallel"}.get(strategy, strategy)
    assert len(results["param_digests"]) == 2 and len(set(results["param_digests"])) == 1
    assert results["accuracy"] > 0.9, results
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 6
    if strategy == "fsdp":
        [rank0, rank1] = results["state_bytes"]
        assert rank0["parameters"] + rank1["parameters"] >= 4 * (64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10)
        assert sorted((run_dir / "checkpoints").glob("*.rank1.h5")), "every rank writes its shard"
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads((run_dir / "results.json").read_text())["param_digests"] == results["param_digests"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 6  # nothing trained twice
