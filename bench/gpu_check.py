"""GPU check (run on a lent GPU machine, never in CI): DDP (or FSDP) over NCCL with fp16 AMP and
fp16 gradient compression, through hpc-train's DistributedTrainer, on scikit-learn's digits.

    torchrun --nproc_per_node=1 bench/gpu_check.py --out result.json [--strategy fsdp]

With --strategy fsdp the model is sharded by fully_shard over an NCCL mesh, the loss scaler is
torch's ShardedGradScaler and gradients are reduce-scattered in float16.

Records the device, backend, AMP dtype, GradScaler use, final accuracy and step throughput. It uses
the trainer directly (not a YAML spec) so it runs on an image without hpc-train's CLI dependencies.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.models.mlp import MLP
from hpc_train.runtime.trainer import DistributedTrainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this check needs a CUDA GPU"
    digits = load_digits()
    x = torch.tensor((digits.data - digits.data.mean(0)) / (digits.data.std(0) + 1e-6), dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.int64)
    train = TensorDataset(x[:1400], y[:1400])
    val = TensorDataset(x[1400:], y[1400:])
    trainer = DistributedTrainer(backend="nccl", strategy=args.strategy, num_gpus=1, mixed_precision=True,
                                 compression="fp16", learning_rate=3e-3, seed=0)
    if trainer.world_size == 1:
        # One GPU: force a one-rank NCCL group so DDP (or FSDP), its collectives and the fp16
        # compression really run (the trainer would otherwise skip the process group for a world of 1).
        from hpc_train.runtime.comm import DDPBackend, FSDPBackend

        backend = FSDPBackend if args.strategy == "fsdp" else DDPBackend
        trainer.comm.close()
        trainer.comm = backend(trainer.env, backend="nccl", device=trainer.device)
        trainer.comm.setup()
    model = MLP(64, [512, 256], 10)
    started = time.perf_counter()
    history = trainer.train(model, DataLoader(train, batch_size=64, shuffle=True), args.epochs,
                            val_loader=DataLoader(val, batch_size=256))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    loop = trainer._loop
    result = {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())), "backend": torch.distributed.get_backend()
        if torch.distributed.is_initialized() else "none (world of 1)",
        "world_size": trainer.world_size, "strategy": args.strategy, "amp": True, "compression": "fp16",
        "grad_scaler": type(loop.scaler).__name__ if loop is not None and loop.scaler is not None else None,
        "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"],
        "val_accuracy": history[-1]["val_accuracy"], "epochs": len(history), "seconds": round(seconds, 2),
        "param_digest": trainer.param_digest(),
    }
    trainer.close()
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
