"""Gradient (activation) checkpointing over a model's `blocks`, without renaming its parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hpc_train.errors import UserError


def enable_gradient_checkpointing(model: nn.Module) -> Callable[[], None]:
    """Recompute each block of `model.blocks` in backward; returns a function that undoes it."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
        raise UserError(f"gradient_checkpointing needs a model with a `blocks` attribute (nn.ModuleList or "
                        f"nn.Sequential); {type(model).__name__} has none\n"
                        "HINT: expose the repeated layers as self.blocks, or turn gradient_checkpointing off")
    patched: list[nn.Module] = []
    for block in blocks:
        # An instance attribute shadows the class's forward, so state_dict keys stay unchanged
        # (a wrapper module would rename them to blocks.0.inner.* and break checkpoints).
        block.forward = _checkpointed(block.forward)
        patched.append(block)

    def undo() -> None:
        for block in patched:
            del block.forward

    return undo


def _checkpointed(forward: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run
