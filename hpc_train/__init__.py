"""hpc-train: train ML models on SLURM clusters the way good HPC engineers would.

`from hpc_train import TrainingOrchestrator, DistributedTrainer, TrainingMonitor` imports each one
only when it is asked for, so the orchestrator and the CLI never load torch unless they need it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "TrainingOrchestrator": "hpc_train.orchestrator.orchestrator",
    "DistributedTrainer": "hpc_train.runtime.trainer",
    "TrainingMonitor": "hpc_train.monitor",
}

__all__ = ["DistributedTrainer", "TrainingMonitor", "TrainingOrchestrator", "__version__"]

if TYPE_CHECKING:
    from hpc_train.monitor import TrainingMonitor
    from hpc_train.orchestrator.orchestrator import TrainingOrchestrator
    from hpc_train.runtime.trainer import DistributedTrainer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpc_train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
