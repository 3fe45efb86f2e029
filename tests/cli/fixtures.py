"""Model factories that end-to-end tests name in specs (`model.type: tests.cli.fixtures:broken`)."""

from __future__ import annotations

from typing import Any

BROKEN_MESSAGE = "this model factory is broken on purpose"


def broken(*args: Any, **kwargs: Any) -> Any:
    """A user's model factory with a bug: the job must fail and show this traceback."""
    raise RuntimeError(BROKEN_MESSAGE)


NOT_A_FACTORY = 42  # `model.type: tests.cli.fixtures:NOT_A_FACTORY` is refused before the queue


def tiny(n_features: int, n_classes: int, width: int = 8) -> Any:
    """A factory with a fixed signature: hyperparameters other than `width` are refused at submit."""
    import torch

    return torch.nn.Sequential(torch.nn.Linear(n_features, width), torch.nn.ReLU(), torch.nn.Linear(width, n_classes))


def tiny_mlp(n_features: int, n_classes: int, width: int = 8, depth: int = 1) -> Any:
    """A user's own model factory with two arguments of its own (model.hyperparameters)."""
    from hpc_train.models.mlp import MLP

    return MLP(n_features, [width] * depth, n_classes)
