"""Submissions SLURM refuses, or that cannot reach SLURM: exit 2, one message with a hint, no
traceback, no run directory left behind, and no long wait for an unreachable controller.

The unreachable controller is simulated without touching the shared cluster: the command's own
SLURM_CONF points at a copy of slurm.conf whose SlurmctldPort nothing listens on.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import PYTHON, REPO, SlurmCluster

from hpc_train.jobs import get_scheduler
from hpc_train.scheduler.local import LocalScheduler

pytestmark = pytest.mark.slurm

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
QUICKSTART = REPO / "configs" / "quickstart.yaml"
# An unreachable controller must be reported at once, not after sbatch's ~10 s of retries: a refusal may take
# this much longer than the same CLI's `validate` of the same spec, timed in the same test (a loaded
# machine slows both alike).
FAST_S = 5.0


def client_env(**extra: str) -> dict[str, str]:
    """This environment (SLURM_CONF set by the fixture) without SLURM_* job variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    return {**env, **extra}


def submit(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """`hpc-train submit quickstart ARGS` with output_dir in tmp_path: (process, seconds it took)."""
    t0 = time.monotonic()
    proc = subprocess.run([HPC_TRAIN, "--home", str(tmp_path / "home"), "submit", str(QUICKSTART),
                           "--set", f"output_dir={tmp_path / 'runs'}", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)
    return proc, time.monotonic() - t0


def assert_refused(proc: subprocess.CompletedProcess[str], tmp_path: Path, *phrases: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), f"left behind: {list(runs.iterdir())}"


@pytest.fixture
def unreachable_conf(slurm_cluster: SlurmCluster, tmp_path: Path) -> Path:
    """A copy of the cluster's slurm.conf whose controller port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    text = Path(slurm_cluster.env["SLURM_CONF"]).read_text()
    conf = tmp_path / "slurm.conf"
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", f"SlurmctldPort={port}", text))
    return conf


@pytest.mark.parametrize("executor", [["--executor", "slurm"], ["--sbatch"]])
def test_bad_partition_lists_the_partitions(slurm_cluster: SlurmCluster, tmp_path: Path,
                                            executor: list[str]) -> None:
    proc, _ = submit(tmp_path, "--set", "resources.partition=nope", *executor, env=client_env())
    assert_refused(proc, tmp_path, "nope", "partitions on this cluster: debug, long, urgent")


@pytest.mark.parametrize("executor", [["--executor", "slurm"], ["--sbatch"]])
def test_unreachable_controller_fails_fast(tmp_path: Path, unreachable_conf: Path,
                                           executor: list[str]) -> None:
    t0 = time.monotonic()
    validated = subprocess.run([HPC_TRAIN, "validate", str(QUICKSTART)], capture_output=True, text=True, timeout=60,
                               env=client_env(SLURM_CONF=str(unreachable_conf)), check=False)
    baseline = time.monotonic() - t0
    assert validated.returncode == 0, validated.stderr
    proc, seconds = submit(tmp_path, *executor, env=client_env(SLURM_CONF=str(unreachable_conf)))
    assert_refused(proc, tmp_path, "cannot reach the SLURM controller", "HINT: ", "slurmctld")
    assert seconds < baseline + FAST_S, (seconds, baseline)


def test_auto_falls_back_to_local_when_controller_unreachable(unreachable_conf: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_scheduler("auto").name == "slurm"
    monkeypatch.setenv("SLURM_CONF", str(unreachable_conf))
    t0 = time.monotonic()
    assert isinstance(get_scheduler("auto"), LocalScheduler)
    assert time.monotonic() - t0 < FAST_S


@pytest.mark.parametrize("executor", [["--executor", "slurm"], ["--sbatch"]])
def test_no_sbatch_on_path(slurm_cluster: SlurmCluster, tmp_path: Path, executor: list[str]) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = client_env(PATH=str(empty))
    proc, _ = submit(tmp_path, *executor, env=env)
    assert_refused(proc, tmp_path, "`sbatch` not found on PATH", "HINT: ")
    # the dry run is pure: it prints the submission on a machine without SLURM
    proc, _ = submit(tmp_path, *executor, "--dry-run", env=env)
    assert proc.returncode == 0 and "#SBATCH --job-name=quickstart" in proc.stdout, proc.stderr
