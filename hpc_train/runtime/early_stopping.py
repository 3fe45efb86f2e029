"""Stop when a validation metric has not improved for `patience` epochs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hpc_train.errors import UserError

METRICS = ("val_loss", "val_accuracy", "loss", "accuracy")
MODES = ("min", "max")


class EarlyStopping:
    """Patience counter over one metric of the epoch record; its state goes into checkpoints."""

    def __init__(self, *, metric: str = "val_loss", patience: int = 3, mode: str | None = None,
                 min_delta: float = 0.0) -> None:
        if metric not in METRICS:
            raise UserError(f"early_stopping.metric {metric!r} is not one of: {', '.join(METRICS)}")
        mode = mode or ("max" if metric.endswith("accuracy") else "min")
        if mode not in MODES:
            raise UserError(f"early_stopping.mode {mode!r} is not one of: {', '.join(MODES)}")
        if patience < 1:
            raise UserError(f"early_stopping.patience must be at least 1, got {patience}")
        self.metric, self.patience, self.mode, self.min_delta = metric, int(patience), mode, float(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EarlyStopping:
        """From a dict such as {"patience": 3, "metric": "val_loss", "mode": "min"}."""
        allowed = {"patience", "metric", "mode", "min_delta"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise UserError(f"early_stopping has unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
        return cls(**dict(config))

    def update(self, record: Mapping[str, Any]) -> bool:
        """Account for one epoch's record; True when training should stop."""
        value = record.get(self.metric)
        if value is None:
            raise UserError(f"early stopping watches {self.metric!r}, which this run does not compute\n"
                            "HINT: pass val_loader to train() or watch 'loss'")
        improved = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if improved:
            self.best, self.bad_epochs = float(value), 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Best value and epochs without improvement."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from state_dict()."""
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
