"""hpc-train: train ML models on SLURM clusters the way good HPC engineers would.

`from hpc_train import TrainingOrchestrator, DistributedTrainer, TrainingMonitor` imports each one
only when it is asked for, so the orchestrator and the CLI never load torch unless they need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpc_train.lazy import lazy_getattr

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "TrainingOrchestrator": "hpc_train.orchestrator.orchestrator",
    "DistributedTrainer": "hpc_train.runtime.trainer",
    "TrainingMonitor": "hpc_train.monitor",
    "IgnoredSettingWarning": "hpc_train.spec.applicability",
}

__all__ = ["DistributedTrainer", "IgnoredSettingWarning", "TrainingMonitor", "TrainingOrchestrator", "__version__"]

if TYPE_CHECKING:
    from hpc_train.monitor import TrainingMonitor
    from hpc_train.orchestrator.orchestrator import TrainingOrchestrator
    from hpc_train.runtime.trainer import DistributedTrainer
    from hpc_train.spec.applicability import IgnoredSettingWarning


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
