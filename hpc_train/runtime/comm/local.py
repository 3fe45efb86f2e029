"""World size 1: no process group, no wrappers; the plain loop `hpc-train run` uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hpc_train.runtime.comm.base import (
    CommBackend,
    OptimizerMaker,
    ReduceOp,
    load_model_state,
    load_optimizer_state,
)


class LocalBackend(CommBackend):
    """A single process: every collective is the identity."""

    name = "local"

    @property
    def rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    def setup(self) -> None:
        """Nothing to join."""

    def prepare(
        self,
        model: nn.Module,
        make_optimizer: OptimizerMaker,
        *,
        model_state: Mapping[str, Any] | None,
        optimizer_state: Mapping[str, Any] | None,
        compression: str,
        accumulation_steps: int,
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Load the saved state; nothing to wrap."""
        load_model_state(model, model_state)
        optimizer = make_optimizer(model.parameters())
        load_optimizer_state(optimizer, optimizer_state)
        return model, optimizer

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """The tensor itself."""
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """A list holding the object."""
        return [obj]

    def barrier(self) -> None:
        """Nothing to wait for."""
