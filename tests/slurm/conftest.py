"""The local SLURM cluster (slurm/start.sh) as a session fixture: started with 2 nodes if it is not
up already, stopped at the end only if this session started it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import IN_CI, PYTHON, REPO, SlurmCluster, mpirun_argv, require, require_mpirun  # noqa: F401

SLURM_DIR = REPO / "slurm"
START_TIMEOUT_S = 300  # the first start initialises MariaDB


def state_dir() -> Path:
    return Path(os.environ.get("HPC_TRAIN_SLURM_STATE", REPO / ".slurm-state"))


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of <state>/env.sh."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            env[name.strip()] = value.strip()
    return env


def _running_nodes() -> int:
    proc = subprocess.run([str(SLURM_DIR / "status.sh")], capture_output=True, text=True, timeout=30, check=False)
    return int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    missing = [c for c in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch") if shutil.which(c) is None]
    require(not missing, f"SLURM parts not installed ({', '.join(missing)}): run scripts/setup.sh")
    require(os.geteuid() == 0, "the local SLURM cluster runs as root (slurm/start.sh)")

    was_running = _running_nodes()
    if was_running != 2:
        proc = subprocess.run([str(SLURM_DIR / "start.sh"), "--nodes", "2"], capture_output=True, text=True,
                              timeout=START_TIMEOUT_S, check=False)
        require(proc.returncode == 0, f"slurm/start.sh --nodes 2 failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    state = state_dir()
    env = read_env_file(state / "env.sh")
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield SlurmCluster(state_dir=state, env=env, nodes=2)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        # Stopped before: stop again. Running with another node count: leave it up (with 2 now).
        if was_running == 0:
            subprocess.run([str(SLURM_DIR / "stop.sh")], capture_output=True, text=True, timeout=120, check=False)
