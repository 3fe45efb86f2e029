"""Communication backends: one file per way of averaging gradients, chosen by strategy name."""

from __future__ import annotations

from hpc_train.runtime.comm.base import COMPRESSIONS, CommBackend, OptimizerMaker, ReduceOp
from hpc_train.runtime.comm.ddp import DDPBackend
from hpc_train.runtime.comm.fsdp import FSDPBackend
from hpc_train.runtime.comm.horovod import HorovodBackend, import_horovod
from hpc_train.runtime.comm.local import LocalBackend

__all__ = ["COMPRESSIONS", "CommBackend", "DDPBackend", "FSDPBackend", "HorovodBackend", "LocalBackend",
           "OptimizerMaker", "ReduceOp", "import_horovod"]
