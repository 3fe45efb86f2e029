"""World size 1: no process group, no wrappers; the plain loop `hpc-train run` uses."""

from __future__ import annotations

from typing import Any

import torch

from hpc_train.runtime.comm.base import (
    CommBackend,
    ReduceOp,
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

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """The tensor itself."""
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """A list holding the object."""
        return [obj]

    def barrier(self) -> None:
        """Nothing to wait for."""
