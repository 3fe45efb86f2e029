"""Train a torch model from a spec with DistributedTrainer; survive preemption by checkpoint + requeue."""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.checkpoint.identity import run_identity
from hpc_train.data import Dataset
from hpc_train.errors import SpecError
from hpc_train.metrics import classification_metrics
from hpc_train.models.factory import check_factory_arguments, import_factory
from hpc_train.models.mlp import MLP
from hpc_train.rundir import RunDirectory
from hpc_train.runtime.environments import ClusterEnvironment
from hpc_train.runtime.job_checkpoints import checkpoint_dir
from hpc_train.runtime.preemption import PreemptionGuard, request_requeue, restart_count
from hpc_train.runtime.state import tensors_digest
from hpc_train.spec.model import JobSpec
from hpc_train.status import JobStatus

log = logging.getLogger(__name__)

STRATEGY_ALIASES = {"none": "ddp", "ddp": "ddp", "data_parallel": "data_parallel", "horovod": "horovod",
                    "model_parallel": "model_parallel", "fsdp": "model_parallel"}


def build_torch_model(spec: JobSpec, data: Dataset) -> nn.Module:
    """The built-in MLP, or the user's factory called with n_features, n_classes and hyperparameters."""
    if spec.model.type == "neural_network":
        return MLP(data.n_features, spec.model.hidden_sizes, data.n_classes, spec.model.dropout)
    factory = import_factory(spec.model.type)
    check_factory_arguments(factory, spec.model.type, spec.model.hyperparameters)
    model = factory(n_features=data.n_features, n_classes=data.n_classes, **spec.model.hyperparameters)
    if not isinstance(model, nn.Module):
        raise SpecError("the model factory must return a torch.nn.Module", key="model.type", value=spec.model.type)
    return model


def train_torch(spec: JobSpec, data: Dataset, run_dir: RunDirectory, env: ClusterEnvironment,
                guard: PreemptionGuard, *, on_epoch: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train on every rank; rank 0 writes metrics, progress, the model and the results (and calls on_epoch
    after each epoch's record, e.g. for a resource sample)."""
    from hpc_train.runtime.trainer import DistributedTrainer

    threads = spec.training.threads or spec.resources.cpus_per_task
    torch.set_num_threads(threads)
    torch.manual_seed(spec.training.seed)
    strategy = STRATEGY_ALIASES[spec.distributed.strategy]
    # Sharded: only rank 0 builds the model whole; the others build its shapes, and FSDP gives each
    # rank its shards of rank 0's parameters (or of its checkpoint).
    on_meta = strategy == "model_parallel" and env.world_size > 1 and env.global_rank != 0
    with torch.device("meta") if on_meta else nullcontext():
        model = build_torch_model(spec, data)
    train_set = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    val_set = TensorDataset(torch.from_numpy(data.x_val), torch.from_numpy(data.y_val))
    train_loader = DataLoader(train_set, batch_size=spec.data.batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=max(256, spec.data.batch_size))
    # Checkpoints are always written; auto_resume decides whether a (re)started job starts from them.
    identity = run_identity(spec)
    store = HDF5CheckpointStore(checkpoint_dir(spec, run_dir), keep_last=spec.checkpoint.keep_last,
                                rank=env.global_rank, sharded=strategy == "model_parallel", run_identity=identity.hash)
    epochs = spec.training.epochs
    progress = _ProgressWriter(run_dir, epochs, is_main=env.global_rank == 0,
                               tensorboard=spec.training.tensorboard, on_epoch=on_epoch)
    early = spec.training.early_stopping.model_dump() if spec.training.early_stopping else None
    backend = spec.distributed.backend if spec.distributed.backend != "auto" else (
        "nccl" if spec.resources.gpus_per_node and torch.cuda.is_available() else "gloo")
    # The preemption guard was installed by the worker before anything slow happened.
    trainer = DistributedTrainer(
        backend=backend, strategy=strategy, num_gpus=spec.resources.gpus_per_node,
        accumulation_steps=spec.training.accumulation_steps, mixed_precision=spec.training.mixed_precision,
        gradient_checkpointing=spec.training.gradient_checkpointing, compression=spec.distributed.compression,
        learning_rate=spec.training.learning_rate, optimizer=spec.training.optimizer, seed=spec.training.seed,
        early_stopping=early, checkpoint_store=store, should_stop=guard, on_epoch_end=progress.epoch_done,
        environment=env, weight_decay=spec.training.weight_decay, resume=spec.checkpoint.auto_resume,
        run_identity=identity, async_checkpoints=spec.checkpoint.async_save, resume_from=spec.checkpoint.resume_from,
        momentum=spec.training.momentum if spec.training.optimizer == "sgd" else None)
    try:
        history = trainer.train(model, train_loader, epochs, checkpoint_interval=spec.checkpoint.interval,
                                val_loader=val_loader, checkpoint_unit=spec.checkpoint.unit)
        if trainer.preempted:
            return _preempted(spec, run_dir, trainer.is_main, guard)
        # Collectives, every rank: a sharded model is gathered whole once, for the digest and the export.
        final_state = trainer.full_state_dict()
        parameter_names = {name for name, _ in model.named_parameters()}
        digest = tensors_digest({name: value for name, value in final_state.items() if name in parameter_names})
        digests = trainer.comm.all_gather_object(digest)
        hosts = trainer.comm.all_gather_object(socket.gethostname())
        state_bytes = trainer.comm.all_gather_object(trainer.state_bytes())
    finally:
        trainer.close()
    results: dict[str, Any] = {}
    if env.global_rank == 0:
        plain = build_torch_model(spec, data)  # unsharded, unwrapped: evaluated and saved in one process
        plain.load_state_dict(final_state)
        results = _evaluate(plain.to(trainer.device), data)
        # The trained parameters in the same pickle-free HDF5 format as checkpoints.
        model_path = HDF5CheckpointStore(run_dir.path / "model", keep_last=1, prefix="model").save(
            {"model": final_state}, step=len(history), meta={"spec": spec.name})
        results["model_path"] = str(model_path)
    results.update({"param_digests": digests, "hosts": hosts, "state_bytes": state_bytes, "epochs_run": len(history),
                    "stopped_early": len(history) < epochs, "restarts": restart_count(),
                    "strategy": strategy, "backend": backend, "threads": threads,
                    "resumed_from_step": trainer.resumed_from, "warm_started_from": trainer.warm_started_from,
                    "gradient_transport": _gradient_transport(trainer),
                    "checkpointed_blocks": trainer.checkpointed_blocks,
                    "background_checkpoints": trainer.background_checkpoints})
    return results


def _gradient_transport(trainer: Any) -> str:
    """How gradients travel between ranks: mpi4py, the process group's backend, or none (one rank)."""
    if trainer.world_size == 1:
        return "none"
    if getattr(trainer.comm, "gradients_over_mpi", False):
        return "mpi4py"
    return str(getattr(trainer.comm, "backend", trainer.comm.name))  # Horovod has no process-group backend


def _evaluate(model: nn.Module, data: Dataset) -> dict[str, Any]:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(data.x_val).to(next(model.parameters()).device)).float().cpu()
    proba = torch.softmax(logits, dim=1).numpy().astype(np.float64)
    proba /= proba.sum(axis=1, keepdims=True)
    return classification_metrics(data.y_val, proba.argmax(axis=1), proba, data.n_classes)


def _preempted(spec: JobSpec, run_dir: RunDirectory, is_main: bool, guard: PreemptionGuard) -> dict[str, Any]:
    """After the preemption checkpoint: record it, ask SLURM to requeue (rank 0), and leave cleanly.

    status.json gets the timeline on rank 0: signal_at (handler ran), stop_seen_at (flag polled at a step
    boundary), checkpointed_at (checkpoint on disk, all ranks past it), preempted_at (requeue answered).
    """
    if not is_main:
        return {"preempted": True}
    signal_name = guard.signal_name or "signal"
    checkpointed_at = time.time()
    requeued = spec.preemption.requeue and request_requeue(spec.preemption.max_requeues)
    status = JobStatus.REQUEUED if requeued else JobStatus.PREEMPTED
    run_dir.write_status(status, preempted_by=signal_name, restarts=restart_count(), signal_at=guard.received_at,
                         stop_seen_at=guard.seen_at, checkpointed_at=checkpointed_at, preempted_at=time.time())
    log.warning("preempted by %s: checkpoint written, %s", signal_name,
                "job requeued" if requeued else "rerun the same command to resume")
    return {"preempted": True, "requeued": requeued}


class _ProgressWriter:
    """on_epoch_end hook: metrics.jsonl and progress.json with the measured step rate."""

    def __init__(self, run_dir: RunDirectory, epochs: int, *, is_main: bool, tensorboard: bool = False,
                 on_epoch: Callable[[], None] | None = None) -> None:
        self.run_dir, self.epochs, self.is_main, self.on_epoch = run_dir, epochs, is_main, on_epoch
        self.tensorboard: Any = None
        if tensorboard and is_main:
            from hpc_train.monitor.tensorboard import TensorBoardWriter

            self.tensorboard = TensorBoardWriter(run_dir.path)
        self.started = time.time()
        self.first_step: int | None = None

    def epoch_done(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        self.run_dir.append_metrics(record)
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(record)
        epoch, step = int(record["epoch"]), int(record["step"])
        steps_per_epoch = max(1, math.ceil(step / max(epoch, 1)))
        duration = float(record.get("duration") or 0.0)
        rate = steps_per_epoch / duration if duration > 0 else None
        self.run_dir.write_progress(epoch=epoch, epochs=self.epochs, step=step,
                                    total_steps=steps_per_epoch * self.epochs, started=self.started,
                                    steps_per_s=rate)
        if self.on_epoch is not None:
            self.on_epoch()


