"""The orchestrator: jobs, batches, hyperparameter searches and pipelines from Python (TrainingOrchestrator).

Names are imported on first use, so a sweep worker (`python -m hpc_train.orchestrator.sweep_worker`)
does not pay for the submission side (scheduler, templates) when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpc_train.lazy import lazy_getattr

_LAZY = {
    "BatchJobs": "hpc_train.orchestrator.orchestrator",
    "TrainingOrchestrator": "hpc_train.orchestrator.orchestrator",
    "BestModel": "hpc_train.orchestrator.batch",
    "Job": "hpc_train.orchestrator.handles",
    "Pipeline": "hpc_train.orchestrator.handles",
    "SearchJob": "hpc_train.orchestrator.handles",
}

__all__ = ["BatchJobs", "BestModel", "Job", "Pipeline", "SearchJob", "TrainingOrchestrator"]

if TYPE_CHECKING:
    from hpc_train.orchestrator.batch import BestModel
    from hpc_train.orchestrator.handles import Job, Pipeline, SearchJob
    from hpc_train.orchestrator.orchestrator import BatchJobs, TrainingOrchestrator


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
