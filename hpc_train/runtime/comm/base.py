"""The CommBackend interface: how gradients and small values travel between ranks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import torch
from torch import nn

ReduceOp = Literal["sum", "max"]
COMPRESSIONS = ("none", "fp16")


class CommBackend(ABC):
    """Collectives for one training process; world size 1 needs none of them."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def rank(self) -> int:
        """This process's global rank."""

    @property
    @abstractmethod
    def world_size(self) -> int:
        """Number of ranks."""

    @abstractmethod
    def setup(self) -> None:
        """Join the group of ranks (idempotent)."""

    @abstractmethod
    def prepare(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        optimizer_state: Mapping[str, Any] | None,
        compression: str,
        accumulation_steps: int,
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Wrap model and optimizer for gradient averaging; load optimizer_state; same start on all ranks."""

    @abstractmethod
    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """Reduce a small tensor over all ranks; every rank gets the result."""

    @abstractmethod
    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's object, indexed by rank, on every rank."""

    @abstractmethod
    def barrier(self) -> None:
        """Wait until every rank arrives."""

    def close(self) -> None:
        """Leave the group, if this backend joined it."""

    @property
    def loss_factor(self) -> float:
        """Factor the loop multiplies into the loss; 1/world when the backend sums instead of averaging."""
        return 1.0

    def any_true(self, flag: bool) -> bool:
        """True on every rank when the flag is true on any rank (one collective)."""
        if self.world_size == 1:
            return flag
        return bool(self.all_reduce(torch.tensor([int(flag)], dtype=torch.int32), "max").item())

    def sync_gradients(self, model: nn.Module, sync: bool) -> AbstractContextManager[Any]:
        """Context for one micro-step; with sync=False gradients only accumulate locally."""
        return nullcontext()

    def optimizer_step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        """Apply the averaged gradients (through the AMP grad scaler when there is one)."""
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The user's model inside whatever prepare() wrapped around it."""
        return model


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any] | None) -> None:
    """Load a saved optimizer state (tuples and int keys as the checkpoint store returns them)."""
    if state is not None:
        optimizer.load_state_dict(dict(state))
