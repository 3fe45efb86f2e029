"""The checkpoint store interface: save a state tree, load the newest valid one back."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_train.errors import UserError


class CheckpointError(UserError):
    """A checkpoint cannot be written or read; says which file and why."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated, incomplete or fails its checksums."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file holds data this store refuses to read (object, pickled, vlen, reference, opaque)."""


@dataclass
class Checkpoint:
    """One loaded checkpoint: where it came from, its step, the state tree and the run's metadata."""

    path: Path
    step: int
    state: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


class CheckpointStore(ABC):
    """A directory of checkpoints, one file per step, written atomically.

    A sharded store belongs to one rank of a run whose ranks hold different state (FSDP): each
    rank saves and loads its own file of every step.
    """

    sharded: bool = False

    @abstractmethod
    def save(self, state: Mapping[str, Any], *, step: int, meta: Mapping[str, Any] | None = None) -> Path:
        """Write `state` as the checkpoint of `step` atomically and return its path."""

    @abstractmethod
    def load(self, path: Path | None = None) -> Checkpoint | None:
        """Load `path`, or the newest valid checkpoint (skipping corrupt ones with a warning); None if none."""

    @abstractmethod
    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""

    @abstractmethod
    def list(self) -> builtins.list[Path]:
        """All complete checkpoints, oldest first."""

    @abstractmethod
    def path_for(self, step: int) -> Path:
        """Where the checkpoint of `step` is (or would be) stored."""

    @abstractmethod
    def steps(self) -> builtins.list[int]:
        """Steps of all complete checkpoints, oldest first."""

    @abstractmethod
    def prune(self, keep_last: int) -> builtins.list[Path]:
        """Remove all but the newest `keep_last` checkpoints; return the removed paths."""
