"""Model factory for the time-limit preemption test (imported inside the job through PYTHONPATH).

`sleepy_mlp` is hpc-train's built-in MLP, built with the same arguments in the same order, that
sleeps `step_delay` seconds in each training forward pass. Its parameters and arithmetic are the
MLP's bit for bit, so a job with it ends with the same parameter digests as the plain MLP spec; the
sleep only makes the job outlast SLURM's time-limit warning without taking CPU from the other jobs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from hpc_train.models.mlp import MLP


class SleepyMLP(MLP):
    """The built-in MLP with a pause in every training forward pass."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int, dropout: float,
                 step_delay: float) -> None:
        super().__init__(in_features, hidden_sizes, num_classes, dropout)
        self.step_delay = step_delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(self.step_delay)
        return super().forward(x)


def sleepy_mlp(n_features: int, n_classes: int, hidden_sizes: Sequence[int] = (128, 64), dropout: float = 0.0,
               step_delay: float = 0.02) -> SleepyMLP:
    """What `model.type: preemption_models:sleepy_mlp` builds."""
    return SleepyMLP(n_features, list(hidden_sizes), n_classes, dropout, step_delay)
