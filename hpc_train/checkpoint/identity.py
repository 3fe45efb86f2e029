"""What makes two trainings the same run, so that one never resumes from, or prunes, another's checkpoints.

A run is its model, its data, and the training and distribution settings that change the numbers.
Left out on purpose: `training.epochs` (rerunning with more epochs continues a run), early stopping,
threads (a mismatch is warned about where it matters), tensorboard, gradient checkpointing and the
transport backend (they change speed or logging, not the arithmetic), and everything about resources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpc_train.spec.model import JobSpec

# section -> the fields of it that define a run (None: all of them)
IDENTITY_FIELDS: dict[str, tuple[str, ...] | None] = {
    "model": None,
    "data": None,
    "training": ("seed", "learning_rate", "optimizer", "momentum", "weight_decay", "accumulation_steps",
                 "mixed_precision"),
    "distributed": ("strategy", "compression"),
}


@dataclass(frozen=True)
class RunIdentity:
    """The defining fields of a run (flattened `section.key` -> JSON value) and their hash."""

    fields: dict[str, Any]

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.fields, sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """`key: ours vs theirs` for every field that differs from another run's fields."""
        keys = sorted(set(self.fields) | set(other))
        return [f"{key}: {other.get(key)!r} there, {self.fields.get(key)!r} here"
                for key in keys if self.fields.get(key) != other.get(key)]


def run_identity(spec: JobSpec) -> RunIdentity:
    """The identity of the run a spec trains."""
    dumped = spec.model_dump(mode="json")
    fields: dict[str, Any] = {}
    for section, names in IDENTITY_FIELDS.items():
        values = dumped.get(section) or {}
        for name in names if names is not None else sorted(values):
            fields[f"{section}.{name}"] = values.get(name)
    return RunIdentity(fields)
