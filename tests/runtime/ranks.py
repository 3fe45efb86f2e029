"""Launch tests/runtime/workers/train_worker.py as one process or under `mpirun -np N`; read results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from support import PYTHON, REPO, mpirun_argv, require

from hpc_train.commands import run_command

WORKER = Path(__file__).parent / "workers" / "train_worker.py"


def require_horovod() -> None:
    """Horovod built with PyTorch support (scripts/install_horovod.sh)."""
    require(importlib.util.find_spec("horovod") is not None
            and importlib.util.find_spec("horovod.torch") is not None,
            "Horovod not installed: run scripts/install_horovod.sh")


def run_ranks(config: dict[str, Any], out: Path, np: int | None = None, timeout: float = 120) -> list[dict[str, Any]]:
    """Run the worker (alone when np is None); each rank's result in rank order (none with `runs`)."""
    argv = [PYTHON, str(WORKER), json.dumps(config), str(out)]
    if np is not None:
        argv = mpirun_argv(np) + argv
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = run_command(argv, timeout=timeout, check=False, env=env)
    assert result.returncode == 0, f"worker failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return [] if "runs" in config else results(out, np or 1)


def results(out: Path, np: int, name: str = "") -> list[dict[str, Any]]:
    """Each rank's result of run `name` (see the worker's `runs`)."""
    prefix = f"{name}_" if name else ""
    return [json.loads((out / f"{prefix}rank{r}.json").read_text()) for r in range(np)]


def load_params(out: Path, rank: int = 0, name: str = "") -> dict[str, torch.Tensor]:
    """The parameters a rank saved after training (run `name`)."""
    prefix = f"{name}_" if name else ""
    params: dict[str, torch.Tensor] = torch.load(out / f"{prefix}params_rank{rank}.pt", weights_only=True)
    return params
