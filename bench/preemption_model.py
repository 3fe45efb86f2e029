"""A model factory for bench_preemption.py: an MLP of wide Linear layers whose parameters plus Adam's two
moments come to about 512 MB (imported inside the job through PYTHONPATH=bench)."""

from __future__ import annotations

from torch import nn


def wide_mlp(n_features: int, n_classes: int, width: int = 4608, hidden_layers: int = 3) -> nn.Module:
    """n_features -> width -> ... -> n_classes; width 4608 with 3 hidden layers is 42.8 M parameters."""
    layers: list[nn.Module] = []
    size = n_features
    for _ in range(hidden_layers):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    layers.append(nn.Linear(size, n_classes))
    return nn.Sequential(*layers)
