"""Fully sharded data parallel (FSDP2, `fully_shard`): parameters, gradients and optimizer state
split across ranks, gathered one block at a time for the forward and backward passes.

Each block of the model's `blocks` becomes one FSDP unit (its parameters are all-gathered just
before it runs and freed after), then the root takes the rest. A model without `blocks` is one
unit: its state is still sharded, but the whole model is gathered for each pass. Gradients are
reduce-scattered, averaged; fp16 compression reduces them in float16. Checkpoints hold each rank's
shards (see `sharded`), so they resume onto the same world size only.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
from torch.distributed.tensor import DTensor

from hpc_train.errors import UserError
from hpc_train.runtime.comm.ddp import DDPBackend

RESHARD_HINT = ("HINT: sharded checkpoints resume onto the world size that wrote them; relaunch with that "
                "many ranks, or start afresh in a new checkpoint directory")


class FSDPBackend(DDPBackend):
    """torch's fully_shard over a 1-D device mesh of all ranks (gloo on CPU, nccl on GPUs)."""

    name = "fsdp"
    sharded = True
    gradient_hooks = False  # reduce-scatter through the process group: MPI must be torch's own

    def wrap_model(self, model: nn.Module, model_state: Mapping[str, Any] | None, compression: str) -> nn.Module:
        """Shard block by block, then the root; fill the shards from rank 0's parameters (a fresh start,
        as DDP and Horovod start) or from this rank's saved shards.

        Ranks other than 0 may build the model on the meta device: they then never hold it whole, only
        their shards (rank 0 holds its initial parameters until they are handed out).
        """
        on_meta = is_on_meta(model)  # DistributedTrainer.train checked that this rank may (not rank 0)
        initial = model.state_dict() if model_state is None and self.rank == 0 else {}
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        policy = MixedPrecisionPolicy(reduce_dtype=torch.float16 if compression == "fp16" else None)
        blocks = getattr(model, "blocks", None)
        for block in blocks if isinstance(blocks, (nn.ModuleList, nn.Sequential)) else ():
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        if on_meta:
            model.to_empty(device=self.device)
        if model_state is None:  # rank 0's tensors, broadcast; each rank keeps its shard
            set_model_state_dict(model, initial, options=StateDictOptions(full_state_dict=True,
                                                                          broadcast_from_rank0=True))
        else:
            self._load_model_shards(model, model_state)
        return model

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: Mapping[str, Any] | None) -> None:
        """Load this rank's optimizer shards as DTensors placed like their parameters."""
        if state is not None:
            optimizer.load_state_dict(_as_sharded(optimizer, state))

    def sync_gradients(self, model: nn.Module, sync: bool) -> AbstractContextManager[Any]:
        """Inside an accumulation window gradients stay unsharded and local; reduced at its end."""
        if isinstance(model, FSDPModule):
            model.set_requires_gradient_sync(sync)
        return nullcontext()

    def make_grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """ShardedGradScaler: each rank sees only its shard's overflow, so found_inf is all-reduced
        and every rank skips the same steps."""
        return ShardedGradScaler(device=device.type)

    def after_evaluation(self, model: nn.Module) -> None:
        """Free the parameters the root unit gathered for the last forward and never released (it
        keeps them for the backward, which evaluation never runs): back to shards only."""
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()

    # -- state ------------------------------------------------------------------------------------

    def full_parameters(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """All-gather every parameter (collective)."""
        return {name: _full(param.detach()) for name, param in model.named_parameters()}

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """All-gather the whole state to CPU on every rank (collective; holds one full copy per rank)."""
        return {name: _full(value.detach()).cpu().clone() for name, value in model.state_dict().items()}

    def _load_model_shards(self, model: nn.Module, saved: Mapping[str, Any]) -> None:
        current = model.state_dict()
        if set(saved) != set(current):
            raise UserError(f"the checkpoint's model does not match this one: missing {sorted(set(current) - set(saved))}"
                            f", unexpected {sorted(set(saved) - set(current))}")
        with torch.no_grad():
            for name, value in current.items():
                local = value.to_local() if isinstance(value, DTensor) else value
                shard = torch.as_tensor(saved[name])
                if shard.shape != local.shape:
                    raise UserError(f"checkpoint shard of {name} has shape {tuple(shard.shape)}, this rank "
                                    f"({self.rank} of {self.world_size}) holds {tuple(local.shape)}\n{RESHARD_HINT}")
                local.copy_(shard)


def _full(value: torch.Tensor) -> torch.Tensor:
    return value.full_tensor() if isinstance(value, DTensor) else value


def _as_sharded(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved optimizer state whose per-parameter shards become DTensors placed like their parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[Any, Any] = {}
    for key, values in dict(saved.get("state", {})).items():
        param = params[int(key)]
        state[key] = {name: _like(param, value) for name, value in dict(values).items()}
    return {**dict(saved), "state": state}


def _like(param: torch.Tensor, value: Any) -> Any:
    """A saved local shard as a DTensor shaped like `param`; scalars (Adam's step) stay as they are."""
    if not isinstance(param, DTensor) or not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    local = param.to_local()
    if value.shape != local.shape:
        raise UserError(f"checkpoint optimizer shard has shape {tuple(value.shape)}, this rank holds "
                        f"{tuple(local.shape)}\n{RESHARD_HINT}")
    return DTensor.from_local(value.to(local.device), param.device_mesh, param.placements,
                              shape=param.shape, stride=param.stride())


def is_on_meta(model: nn.Module) -> bool:
    """Whether any parameter or buffer of `model` is on the meta device (shapes only, no storage)."""
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))
