"""What tests share, as a plain module (`from support import ...`): several conftest.py files exist,
so `from support import` would pick whichever pytest loaded last.

SLURM, MPI and Horovod tests fail (not skip) under CI when their part is missing."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, why: str) -> None:
    """Skip when a real part is missing on a developer machine; fail under CI (CI must have everything)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {why}")
    pytest.skip(why)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds, naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def require_mpirun() -> str:
    path = shutil.which("mpirun")
    require(path is not None, "mpirun (OpenMPI) not installed: run scripts/setup.sh")
    return str(path)


def mpirun_argv(np: int) -> list[str]:
    """mpirun as root on one host with N slots, no host-binding surprises on 2 cores."""
    return [require_mpirun(), "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
            "-np", str(np), "-x", "PYTHONPATH", "-x", "OMP_NUM_THREADS"]


@dataclass(frozen=True)
class SlurmCluster:
    """A running local cluster: its state folder and the environment clients need."""

    state_dir: Path
    env: dict[str, str]
    nodes: int


def write_stage_scripts(folder: Path, fail_stage: str | None = None) -> list[dict[str, str]]:
    """preprocess.py, train.py, evaluate.py: each appends its name to stages.log; one may exit 1."""
    stages = [("data_preprocessing", "preprocess.py"), ("model_training", "train.py"),
              ("model_evaluation", "evaluate.py")]
    for stage, script in stages:
        body = f"import pathlib\nwith pathlib.Path('stages.log').open('a') as f:\n    f.write('{stage}\\n')\n"
        if stage == fail_stage:
            body += "import sys\nprint('training data is corrupt', file=sys.stderr)\nsys.exit(1)\n"
        (folder / script).write_text(body)
    return [{"stage": stage, "script": script} for stage, script in stages]
