"""The built-in torch model: a multilayer perceptron whose hidden layers are checkpointable blocks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Linear-ReLU-Dropout blocks (`self.blocks`) and a linear head; inputs are flattened."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [in_features, *hidden_sizes]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)) for a, b in itertools.pairwise(sizes)
        )
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch."""
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
