"""The local SLURM cluster does what the rest of hpc-train relies on: accounting in sacct, PMIx MPI
under srun, two distinct nodes, and a quick restart after `scontrol requeue`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from support import PYTHON, SlurmCluster, require

pytestmark = pytest.mark.slurm


def clean_env() -> dict[str, str]:
    """This environment without the SLURM_* job variables that would tie srun to an enclosing job."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


def run(argv: Sequence[str | Path], *, timeout: float = 60, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=clean_env(), check=False)
    assert proc.returncode == 0, f"`{' '.join(map(str, argv))}` exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def sbatch(*args: str | Path, cwd: Path) -> str:
    return run(["sbatch", "--parsable", *args], cwd=cwd).strip().split(";")[0]


def sacct_state(job_id: str) -> str:
    out = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
    lines = out.split()
    return lines[0] if lines else ""


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def test_batch_job_completes_in_sacct(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = sbatch("-o", tmp_path / "out.txt", "--wrap", "echo hello from $SLURMD_NODENAME", cwd=tmp_path)
    wait_for(lambda: sacct_state(job) == "COMPLETED", 60, f"job {job} COMPLETED in sacct (now {sacct_state(job)!r})")
    assert (tmp_path / "out.txt").read_text().startswith("hello from n")


def test_srun_pmix_runs_mpi4py_ranks(slurm_cluster: SlurmCluster) -> None:
    require(importlib.util.find_spec("mpi4py") is not None, "mpi4py not installed: pip install mpi4py")
    code = "from mpi4py import MPI; c = MPI.COMM_WORLD; print(f'rank {c.Get_rank()} size {c.Get_size()}')"
    out = run(["srun", "--mpi=pmix", "-n", "2", PYTHON, "-c", code], timeout=120)
    assert sorted(out.split("\n")[:-1]) == ["rank 0 size 2", "rank 1 size 2"]


def test_two_node_job_runs_on_n1_and_n2(slurm_cluster: SlurmCluster) -> None:
    out = run(["srun", "-N", "2", "--ntasks-per-node=1", "hostname"], timeout=120)
    assert sorted(out.split()) == ["n1", "n2"]


def test_requeue_restarts_job_quickly(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    job = sbatch("--requeue", "-o", "/dev/null", "--wrap",
                 f'echo "restart=${{SLURM_RESTART_COUNT:-0}}" >> {starts}; sleep 300', cwd=tmp_path)
    try:
        wait_for(lambda: starts.exists() and "restart=0" in starts.read_text(), 60, f"job {job} to start")
        run(["scontrol", "requeue", job])
        # With SLURM's default cred_expire a requeued job may not start again for 120 s; AuthInfo's
        # cred_expire=5 makes it ~6 s. The budget sits between, with room for a loaded machine.
        wait_for(lambda: "restart=1" in starts.read_text(), 90, f"job {job} to restart after requeue")
    finally:
        subprocess.run(["scancel", job], env=clean_env(), capture_output=True, timeout=30, check=False)
