"""One rank of a test run: train as the JSON config says, write rank<r>.json (+ params) to the out dir.

Run as `python train_worker.py CONFIG_JSON OUT_DIR` alone (world of one) or under mpirun.
Config keys (all optional): strategy, backend, accumulation_steps, compression, mixed_precision,
gradient_checkpointing, optimizer, lr, seed, epochs, batch_size, n_samples, n_features, hidden,
classes, dropout, dataset ("synthetic" | "digits"), checkpoint_dir, checkpoint_interval,
checkpoint_unit, async_checkpoints, stop_after_steps (rank 0's should_stop() turns true on that call), record_allreduce,
meta_init (ranks other than 0 build the model on the meta device),
early_stopping, runs (a list of {"name": ..., **overrides}: several trainings one after the other
in the same processes, each writing <name>_rank<r>.json).
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.models.mlp import MLP
from hpc_train.runtime import DistributedTrainer, detect_environment


def make_data(cfg: dict[str, Any]) -> tuple[TensorDataset, TensorDataset | None, int, int]:
    if cfg.get("dataset") == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        x, y = load_digits(return_X_y=True)
        x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        scaler = StandardScaler().fit(x_tr)
        train = TensorDataset(torch.tensor(scaler.transform(x_tr), dtype=torch.float32), torch.tensor(y_tr))
        val = TensorDataset(torch.tensor(scaler.transform(x_va), dtype=torch.float32), torch.tensor(y_va))
        return train, val, 64, 10
    gen = torch.Generator().manual_seed(1234)
    n, f, c = cfg.get("n_samples", 256), cfg.get("n_features", 12), cfg.get("classes", 3)
    x = torch.randn(n, f, generator=gen)
    w = torch.randn(f, c, generator=gen)
    y = (x @ w).argmax(1)
    val_set = TensorDataset(x[: n // 4], y[: n // 4]) if cfg.get("val") else None
    return TensorDataset(x, y), val_set, f, c


class Recorder:
    """Records dtype and bytes of every tensor handed to the gradient allreduce."""

    def __init__(self, strategy: str, backend: str) -> None:
        self.calls: list[dict[str, Any]] = []
        if backend == "mpi":  # DDP's buckets go to MPI_Allreduce through MPIGradients.allreduce_
            from hpc_train.runtime.comm.ddp import MPIGradients

            original_mpi = MPIGradients.allreduce_

            def mpi_hook(gradients: MPIGradients, tensor: torch.Tensor) -> None:
                self._record(tensor)
                original_mpi(gradients, tensor)

            MPIGradients.allreduce_ = mpi_hook  # type: ignore[method-assign]
            self.stop = lambda: setattr(MPIGradients, "allreduce_", original_mpi)
        elif strategy == "horovod":
            import horovod.torch.optimizer as hvd_optimizer

            original = hvd_optimizer.allreduce_async_

            def hvd_hook(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                self._record(tensor)
                return original(tensor, *args, **kwargs)

            hvd_optimizer.allreduce_async_ = hvd_hook
            self.stop = lambda: setattr(hvd_optimizer, "allreduce_async_", original)
        elif strategy in ("fsdp", "model_parallel"):  # gradients are reduce-scattered
            import torch.distributed as dist

            original_reduce_scatter = dist.reduce_scatter_single

            def fsdp_hook(*args: Any, **kwargs: Any) -> Any:
                self._record(kwargs["input"] if "input" in kwargs else args[1])
                return original_reduce_scatter(*args, **kwargs)

            dist.reduce_scatter_single = fsdp_hook
            self.stop = lambda: setattr(dist, "reduce_scatter_single", original_reduce_scatter)
        else:
            import torch.distributed as dist

            original_all_reduce = dist.all_reduce

            def ddp_hook(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                self._record(tensor)
                return original_all_reduce(tensor, *args, **kwargs)

            dist.all_reduce = ddp_hook
            self.stop = lambda: setattr(dist, "all_reduce", original_all_reduce)

    def _record(self, tensor: torch.Tensor) -> None:
        self.calls.append({"dtype": str(tensor.dtype), "numel": tensor.numel(),
                           "bytes": tensor.numel() * tensor.element_size()})


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    runs = cfg.pop("runs", None) or [{"name": ""}]
    trainers = [train_once({**cfg, **run}, out, prefix=f"{run['name']}_" if run["name"] else "") for run in runs]
    for trainer in reversed(trainers):  # the first one created the process group
        trainer.close()


def train_once(cfg: dict[str, Any], out: Path, prefix: str) -> DistributedTrainer:
    env = detect_environment()
    train, val, n_features, n_classes = make_data(cfg)
    torch.manual_seed(cfg.get("seed", 0))
    on_meta = cfg.get("meta_init", False) and env.global_rank != 0  # shapes only, off rank 0
    with torch.device("meta") if on_meta else nullcontext():
        model = MLP(n_features, cfg.get("hidden", [16, 16]), n_classes, dropout=cfg.get("dropout", 0.0))

    store = None
    if cfg.get("checkpoint_dir"):
        from hpc_train.checkpoint import HDF5CheckpointStore

        store = HDF5CheckpointStore(cfg["checkpoint_dir"], keep_last=cfg.get("keep_last", 3), rank=env.global_rank,
                                    sharded=cfg.get("strategy") in ("fsdp", "model_parallel"))
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return env.global_rank == 0 and calls["n"] == cfg["stop_after_steps"]

    recorder = Recorder(cfg.get("strategy", "ddp"), cfg.get("backend", "gloo")) if cfg.get("record_allreduce") else None
    trainer = DistributedTrainer(
        backend=cfg.get("backend", "gloo"), strategy=cfg.get("strategy", "ddp"),
        accumulation_steps=cfg.get("accumulation_steps", 1), mixed_precision=cfg.get("mixed_precision", False),
        gradient_checkpointing=cfg.get("gradient_checkpointing", False),
        compression=cfg.get("compression", "none"), learning_rate=cfg.get("lr", 0.05),
        optimizer=cfg.get("optimizer", "sgd"), seed=cfg.get("seed", 0),
        early_stopping=cfg.get("early_stopping"), checkpoint_store=store,
        should_stop=should_stop if cfg.get("stop_after_steps") else None,
        async_checkpoints=cfg.get("async_checkpoints", False),
    )
    loader = DataLoader(train, batch_size=cfg.get("batch_size", 16))
    val_loader = DataLoader(val, batch_size=64) if val is not None else None
    history = trainer.train(model, loader, cfg.get("epochs", 2), checkpoint_interval=cfg.get("checkpoint_interval"),
                            val_loader=val_loader, checkpoint_unit=cfg.get("checkpoint_unit", "epochs"))
    if recorder is not None:
        recorder.stop()
    result = {
        "rank": trainer.rank, "world_size": trainer.world_size, "environment": env.name,
        "digest": trainer.param_digest(), "preempted": trainer.preempted,
        "history": [{k: v for k, v in r.items() if k not in ("duration", "samples_per_s")} for r in history],
        "n_params": sum(p.numel() for p in model.parameters()),
        "allreduce": recorder.calls if recorder else None,
        "state_bytes": trainer.state_bytes(), "resumed_from": trainer.resumed_from,
        "background_checkpoints": trainer.background_checkpoints,
    }
    rank = trainer.rank
    torch.save(trainer.full_state_dict(), out / f"{prefix}params_rank{rank}.pt")
    (out / f"{prefix}rank{rank}.json").write_text(json.dumps(result))
    return trainer


if __name__ == "__main__":
    main()
