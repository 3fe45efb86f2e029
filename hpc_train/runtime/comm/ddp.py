"""torch DistributedDataParallel over gloo (CPU), nccl (CUDA) or mpi.

`backend: mpi` uses torch's MPI process group when torch was built with one. The CPU wheel is not,
so there DDP's gradient buckets are averaged by MPI_Allreduce through mpi4py (a comm hook) and the
process group for everything else (parameter broadcast, metrics) is gloo: between ranks of one node
gloo is TCP over loopback, OpenMPI is shared memory (bench/RESULTS.md, "Allreduce").
"""

from __future__ import annotations

import atexit
import logging
import typing
import warnings
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hpc_train.errors import UserError
from hpc_train.runtime.comm.base import (
    CommBackend,
    ReduceOp,
)
from hpc_train.runtime.environments import ClusterEnvironment

log = logging.getLogger(__name__)

_REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}


class DDPBackend(CommBackend):
    """Gradient averaging by DDP's bucketed allreduce; `no_sync` while gradients accumulate."""

    name = "ddp"
    # Whether gradients pass through DDP comm hooks (and so can go over mpi4py); FSDP's do not.
    gradient_hooks: ClassVar[bool] = True

    def __init__(
        self,
        env: ClusterEnvironment,
        *,
        backend: str,
        device: torch.device,
        main_address: str | None = None,
        main_port: int | None = None,
        timeout: timedelta = timedelta(minutes=10),
    ) -> None:
        self.env = env
        self.device = device
        self.backend = resolve_process_group_backend(backend, device)
        # The CPU wheel has no MPI process group: gradients then go over mpi4py, the rest over gloo.
        self.gradients_over_mpi = backend == "mpi" and self.backend != "mpi"
        if self.gradients_over_mpi and not self.gradient_hooks:
            raise UserError(f"strategy '{self.name}' (model_parallel) reduce-scatters through torch's process group, "
                            f"and this torch ({torch.__version__}) has no MPI one\nHINT: use backend 'gloo' on CPU "
                            "or 'nccl' on GPUs")
        self.main_address = main_address or env.main_address
        self.main_port = main_port or env.main_port
        self.timeout = timeout
        self._owns_group = False

    @property
    def rank(self) -> int:
        return self.env.global_rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    def setup(self) -> None:
        """init_process_group by TCP rendezvous at the environment's main address, unless already done."""
        if dist.is_initialized():
            if dist.get_world_size() != self.world_size or dist.get_rank() != self.rank:
                raise UserError(f"a process group already exists with rank {dist.get_rank()} of "
                                f"{dist.get_world_size()}, but the environment says {self.rank} of {self.world_size}")
            return
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        init_method = f"tcp://{self.main_address}:{self.main_port}"
        log.debug("init_process_group(%s, %s, rank=%d, world=%d)", self.backend, init_method, self.rank,
                  self.world_size)
        dist.init_process_group(self.backend, init_method=init_method, rank=self.rank,
                                world_size=self.world_size, timeout=self.timeout)
        self._owns_group = True
        # A gloo group still alive at interpreter exit can abort the process ("terminate called
        # without an active exception") after training succeeded.
        atexit.register(self.close)

    def wrap_model(self, model: nn.Module, model_state: Mapping[str, Any] | None, compression: str) -> nn.Module:
        """Load, then wrap in DDP (which broadcasts rank 0's parameters); fp16 compression as a comm hook."""
        model = super().wrap_model(model, model_state, compression)
        device_ids = [self.device] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=device_ids)
        if self.gradients_over_mpi:
            mpi = MPIGradients(self.rank, self.world_size)
            log.info("backend mpi: DDP's gradient buckets go to MPI_Allreduce (mpi4py), the rest over gloo")
            ddp.register_comm_hook(state=mpi, hook=mpi_fp16_compress_hook if compression == "fp16" else mpi_allreduce_hook)
        elif compression == "fp16":
            ddp.register_comm_hook(state={}, hook=fp16_compress_hook)
        return ddp

    @property
    def loss_factor(self) -> float:
        """1/world when the MPI hooks sum the gradients (a divide pass cost them 30% at 64-256 MB here)."""
        return 1.0 / self.world_size if self.gradients_over_mpi else 1.0

    def sync_gradients(self, model: nn.Module, sync: bool) -> AbstractContextManager[Any]:
        """DDP's no_sync() on micro-steps inside an accumulation window."""
        if sync or not isinstance(model, DistributedDataParallel):
            return nullcontext()
        return model.no_sync()

    def unwrap(self, model: nn.Module) -> nn.Module:
        """The module inside DDP."""
        return cast(nn.Module, model.module) if isinstance(model, DistributedDataParallel) else model

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """dist.all_reduce on a copy placed where the backend wants it."""
        work = tensor.to(self.device) if self.backend == "nccl" else tensor.clone()
        dist.all_reduce(work, op=_REDUCE_OPS[op])
        return work.to(tensor.device)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """dist.all_gather_object."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """dist.barrier."""
        dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this backend created it, once every rank has come to it."""
        if self._owns_group and dist.is_initialized():
            if self.backend == "gloo":
                # A rank that tears its gloo connections down while a peer still holds the group can
                # abort that peer at exit ("terminate called without an active exception", seen once
                # in ~40 two-rank FSDP runs). Bounded: a rank that died must not hang the others here.
                try:
                    dist.monitored_barrier(timeout=timedelta(seconds=30))
                except RuntimeError as exc:
                    log.warning("not every rank reached the end of training: %s", exc)
            dist.destroy_process_group()
        self._owns_group = False


def fp16_compress_hook(wire_buffers: dict[int, torch.Tensor],
                       bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: average `bucket` over the ranks, sending it as float16; state: a dict to keep buffers in.

    Unlike torch's `fp16_compress_hook` it divides in float32 (nothing overflows float16 before the
    division) and casts into a float16 buffer kept per bucket: on the CPU a fresh buffer for a large
    bucket is a fresh mmap, and faulting its pages in took longer than the cast itself.
    """
    buffer = bucket.buffer()
    wire = _wire_buffer(wire_buffers, bucket.index(), buffer)
    wire.copy_(buffer.div_(dist.get_world_size()))

    def decompress(fut: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        return buffer.copy_(fut.value()[0])

    return dist.all_reduce(wire, async_op=True).get_future().then(decompress)


class MPIGradients:
    """State of the DDP comm hooks that average gradient buckets by MPI_Allreduce (mpi4py).

    The hooks sum: the loop folds 1/world into the loss (DDPBackend.loss_factor), so the sum is the
    average without another pass over the bucket. They block until the bucket is reduced (DDP starts
    buckets in the same order on every rank, as MPI collectives need); float16 buckets are summed by
    a user-defined MPI op, since MPI has no float16 type.
    """

    def __init__(self, rank: int, world_size: int) -> None:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        if (comm.Get_rank(), comm.Get_size()) != (rank, world_size):
            raise UserError(f"backend 'mpi' needs the ranks started by mpirun or srun --mpi=pmix: MPI sees rank "
                            f"{comm.Get_rank()} of {comm.Get_size()}, the environment rank {rank} of {world_size}"
                            "\nHINT: launch with `hpc-train launch -np N` or srun, or use backend 'gloo'")
        self.comm = comm
        self.world_size = world_size
        self.wire_buffers: dict[int, torch.Tensor] = {}
        self._float16_sum: Any = None

    def allreduce_(self, tensor: torch.Tensor) -> None:
        """Sum a contiguous CPU tensor over the ranks, in place."""
        from mpi4py import MPI

        if tensor.dtype == torch.float16:
            if self._float16_sum is None:
                self._float16_sum = MPI.Op.Create(_float16_sum, commute=True)
            self.comm.Allreduce(MPI.IN_PLACE, [tensor.numpy().view(np.uint16), MPI.UINT16_T], op=self._float16_sum)
        else:
            self.comm.Allreduce(MPI.IN_PLACE, tensor.numpy(), op=MPI.SUM)


def _float16_sum(inbuf: Any, inoutbuf: Any, datatype: Any) -> None:
    """MPI user op: inoutbuf += inbuf, both float16 (torch's vectorised add; numpy's was 10x slower)."""
    with warnings.catch_warnings():  # MPI hands the input read-only; it is only read
        warnings.simplefilter("ignore", UserWarning)
        addend = torch.frombuffer(inbuf, dtype=torch.float16)
    torch.frombuffer(inoutbuf, dtype=torch.float16).add_(addend)


def mpi_allreduce_hook(mpi: MPIGradients, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: sum `bucket` over the ranks with MPI_Allreduce."""
    buffer = bucket.buffer()
    mpi.allreduce_(buffer)
    return _completed(buffer)


def mpi_fp16_compress_hook(mpi: MPIGradients, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: sum `bucket` with MPI_Allreduce, sent as float16 (already divided: see loss_factor)."""
    buffer = bucket.buffer()
    wire = _wire_buffer(mpi.wire_buffers, bucket.index(), buffer)
    mpi.allreduce_(wire.copy_(buffer))
    return _completed(buffer.copy_(wire))


# DDP checks the bucket and return annotations against the real types, and
# `from __future__ import annotations` leaves strings there.
for _hook in (fp16_compress_hook, mpi_allreduce_hook, mpi_fp16_compress_hook):
    _hook.__annotations__ = typing.get_type_hints(_hook)


def _wire_buffer(buffers: dict[int, torch.Tensor], index: int, buffer: torch.Tensor) -> torch.Tensor:
    """The float16 buffer kept for bucket `index`; made anew when DDP rebuilt that bucket."""
    wire = buffers.get(index)
    if wire is None or wire.shape != buffer.shape or wire.device != buffer.device:  # DDP rebuilds buckets once
        wire = buffers[index] = torch.empty_like(buffer, dtype=torch.float16)
    return wire


def _completed(tensor: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(tensor)
    return future


def resolve_process_group_backend(backend: str, device: torch.device) -> str:
    """The torch.distributed backend to use for the requested one on this device."""
    if backend == "mpi" and not dist.is_mpi_available():
        if device.type == "cuda":
            raise UserError("backend 'mpi' on GPUs needs a torch built with MPI support, and this torch "
                            f"({torch.__version__}) was not\nHINT: use backend 'nccl' on GPUs")
        return "gloo"  # and gradients over mpi4py (DDPBackend.gradients_over_mpi)
    if backend == "nccl" and device.type != "cuda":
        log.warning("backend 'nccl' needs CUDA devices; this process runs on %s, so gloo is used", device)
        return "gloo"
    return backend
