"""Inside the job: find rank and world, join the group, train, checkpoint, resume.

Names are imported lazily, so `hpc_train.runtime.environments` (no torch) stays cheap for
scikit-learn jobs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpc_train.runtime.environments import ClusterEnvironment, detect_environment
    from hpc_train.runtime.launch import mpirun_command
    from hpc_train.runtime.state import final_param_digest
    from hpc_train.runtime.trainer import DistributedTrainer

_EXPORTS = {
    "ClusterEnvironment": "hpc_train.runtime.environments",
    "detect_environment": "hpc_train.runtime.environments",
    "mpirun_command": "hpc_train.runtime.launch",
    "final_param_digest": "hpc_train.runtime.state",
    "DistributedTrainer": "hpc_train.runtime.trainer",
}

__all__ = ["ClusterEnvironment", "DistributedTrainer", "detect_environment", "final_param_digest",
           "mpirun_command"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
