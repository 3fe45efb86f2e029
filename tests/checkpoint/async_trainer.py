"""Trains with a checkpoint every step written in the background until killed (resuming what is there).

    python async_trainer.py DIRECTORY

Prints "training" once the trainer is built.
"""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.runtime import DistributedTrainer
from hpc_train.runtime.environments import SingleProcessEnvironment


def main() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(4096, 64), torch.randint(0, 10, (4096,))
    model = torch.nn.Sequential(torch.nn.Linear(64, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                                torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    trainer = DistributedTrainer(environment=SingleProcessEnvironment(), checkpoint_dir=sys.argv[1], async_checkpoints=True)
    trainer.checkpoint_store.keep_last = 2  # type: ignore[union-attr]
    print("training", flush=True)
    trainer.train(model, DataLoader(TensorDataset(x, y), batch_size=16), epochs=1000, checkpoint_interval=1,
                  checkpoint_unit="steps")


if __name__ == "__main__":
    main()
