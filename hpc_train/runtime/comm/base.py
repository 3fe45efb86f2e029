"""The CommBackend interface: how gradients and small values travel between ranks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributed.tensor import DTensor

ReduceOp = Literal["sum", "max"]
COMPRESSIONS = ("none", "fp16")
OptimizerMaker = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class CommBackend(ABC):
    """Collectives for one training process; world size 1 needs none of them."""

    name: ClassVar[str]
    # True when each rank holds a different part of the model and optimizer state (FSDP): every
    # rank then writes its own checkpoint file, and a checkpoint resumes onto the same world size.
    sharded: ClassVar[bool] = False

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
        """Wrap the model, build its optimizer over the wrapped parameters, load saved state (this
        rank's, as model_state() and optimizer_state() gave it); every rank starts alike.

        Backends change the steps below, not this order.
        """
        model = self.wrap_model(model, model_state, compression)
        optimizer = self.wrap_optimizer(make_optimizer(model.parameters()), model, compression, accumulation_steps)
        self.load_optimizer(optimizer, optimizer_state)
        return model, optimizer

    def wrap_model(self, model: nn.Module, model_state: Mapping[str, Any] | None, compression: str) -> nn.Module:
        """Load the saved state; a backend puts its gradient-averaging wrapper around the model here."""
        load_model_state(model, model_state)
        return model

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module, compression: str,
                       accumulation_steps: int) -> torch.optim.Optimizer:
        """The optimizer the loop steps (a backend that averages in the optimizer wraps it here)."""
        return optimizer

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: Mapping[str, Any] | None) -> None:
        """Load this rank's saved optimizer state, if any."""
        load_optimizer_state(optimizer, state)

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

    def make_grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """The float16 loss scaler for mixed precision on `device`."""
        return torch.amp.GradScaler(device.type)

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

    def after_evaluation(self, model: nn.Module) -> None:
        """Undo what forward passes without a backward left behind (a sharded model's gathered parameters)."""

    # -- state ------------------------------------------------------------------------------------

    def model_state(self, model: nn.Module, into: Any = None) -> dict[str, torch.Tensor]:
        """CPU copies of this rank's model state (all of it unless sharded), for a checkpoint; copied
        into the tensors of `into` (an earlier model_state nothing uses any more) where they fit."""
        spare = into if isinstance(into, dict) else {}
        return {k: local_cpu_copy(v, spare.get(k)) for k, v in self.unwrap(model).state_dict().items()}

    def optimizer_state(self, optimizer: torch.optim.Optimizer, into: Any = None) -> dict[str, Any]:
        """CPU copy of this rank's optimizer state, for a checkpoint (into `into`'s tensors where they fit)."""
        state: dict[str, Any] = local_cpu_copy(optimizer.state_dict(), into)
        return state

    def full_parameters(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Every parameter whole, by name, on every rank (collective when sharded)."""
        return {name: param.detach() for name, param in self.unwrap(model).named_parameters()}

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The whole model state as CPU tensors on every rank (collective when sharded)."""
        return {k: v.detach().cpu().clone() for k, v in self.unwrap(model).state_dict().items()}


def load_model_state(model: nn.Module, state: Mapping[str, Any] | None) -> None:
    """Load a saved (unsharded) model state into the plain model."""
    if state is not None:
        model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any] | None) -> None:
    """Load a saved optimizer state (tuples and int keys as the checkpoint store returns them)."""
    if state is not None:
        optimizer.load_state_dict(dict(state))


def local_cpu_copy(value: Any, into: Any = None) -> Any:
    """A CPU copy of a tree of tensors; a sharded DTensor contributes this rank's shard.

    `into`, a tree of the same shape from an earlier copy that nothing uses any more, lends its CPU
    tensors where shape and dtype match: copying into memory already mapped is several times faster
    than allocating fresh (page faults), which is most of a snapshot's cost.
    """
    if isinstance(value, torch.Tensor):
        local = (value.to_local() if isinstance(value, DTensor) else value).detach()
        if isinstance(into, torch.Tensor) and into is not local and into.device.type == "cpu" \
                and into.shape == local.shape and into.dtype == local.dtype and into.is_contiguous():
            return into.copy_(local)
        return local.cpu().clone()
    if isinstance(value, dict):
        spare = into if isinstance(into, dict) else {}
        return {k: local_cpu_copy(v, spare.get(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        spares = list(into) if isinstance(into, (list, tuple)) and len(into) == len(value) else [None] * len(value)
        copied = [local_cpu_copy(v, s) for v, s in zip(value, spares, strict=True)]
        return copied if isinstance(value, list) else tuple(copied)
    return value


def local_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes these tensors occupy on this rank (a sharded DTensor counts its local shard)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        total += local.numel() * local.element_size()
    return total
