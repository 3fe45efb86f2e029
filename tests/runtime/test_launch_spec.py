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
    pytest.param("ddp-mpi", id="ddp-mpi"),  # distributed.backend: mpi (DDP's buckets over mpi4py)
    pytest.param("horovod", id="horovod", marks=pytest.mark.horovod),
    pytest.param("fsdp", id="fsdp"),
])
def test_launch_trains_a_spec_on_two_ranks(strategy: str, tmp_path: Path) -> None:
    require_mpirun()
    if strategy == "horovod":
        require_horovod()
    run_dir = tmp_path / "run"
    settings = {"ddp-mpi": ["distributed.strategy=ddp", "distributed.backend=mpi"]}.get(
        strategy, [f"distributed.strategy={strategy}"])
    argv = [HPC_TRAIN, "--home", str(tmp_path / "home"), "launch", "-np", "2", str(SPEC), "--run-dir", str(run_dir),
            *[word for setting in settings for word in ("--set", setting)], "--set", "training.epochs=6",
            "--set", "training.early_stopping=null"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_"))}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["strategy"] == {"fsdp": "model_parallel", "ddp-mpi": "ddp"}.get(strategy, strategy)
    assert results["backend"] == ("mpi" if strategy == "ddp-mpi" else "gloo")
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


def test_launch_exports_what_a_submitted_job_exports(tmp_path: Path) -> None:
    # --dry-run: the ranks get the job environment (resources.env, torch's huge pages), forwarded by -x.
    argv = [HPC_TRAIN, "--home", str(tmp_path / "home"), "launch", "-np", "2", str(SPEC), "--run-dir",
            str(tmp_path / "run"), "--dry-run", "--set", 'resources.env.HOROVOD_CYCLE_TIME="0.02"']
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert "HOROVOD_CYCLE_TIME=0.02" in words and "THP_MEM_ALLOC_ENABLE=1" in words
    mpirun = words[words.index(next(w for w in words if w.endswith("mpirun"))):]
    forwarded = {mpirun[i + 1] for i, word in enumerate(mpirun) if word == "-x"}
    assert {"HOROVOD_CYCLE_TIME", "THP_MEM_ALLOC_ENABLE", "OMP_NUM_THREADS", "HPC_TRAIN_RUN_DIR"} <= forwarded
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
