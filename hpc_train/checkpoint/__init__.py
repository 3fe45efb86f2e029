"""Checkpoints: save a training state tree atomically and load the newest valid one back."""

from hpc_train.checkpoint.hdf5 import HDF5CheckpointStore
from hpc_train.checkpoint.store import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    CorruptCheckpointError,
    UnsafeCheckpointError,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "CorruptCheckpointError",
    "HDF5CheckpointStore",
    "UnsafeCheckpointError",
]
