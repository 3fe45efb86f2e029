"""The product brief's DistributedTrainer example as a user's own script (alone, or one rank under torchrun).

    python brief_script.py EPOCHS OUT_DIR [CHECKPOINT_DIR]

It passes checkpoint_interval and no checkpoint_store; with CHECKPOINT_DIR it passes checkpoint_dir.
Each rank writes OUT_DIR/rank<R>.json: digest, resumed_from, epochs in its history.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from hpc_train import DistributedTrainer
from hpc_train.models.mlp import MLP


def main(argv: list[str]) -> None:
    epochs, out = int(argv[0]), Path(argv[1])
    extra = {"checkpoint_dir": argv[2]} if len(argv) > 2 else {}
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(192, 12, generator=gen)
    y = (x @ torch.randn(12, 3, generator=gen)).argmax(1)
    torch.manual_seed(0)
    model = MLP(12, [32, 32], 3, dropout=0.2)
    train_loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    trainer = DistributedTrainer(backend="gloo", strategy="ddp", accumulation_steps=2, learning_rate=1e-2,
                                 **extra)
    history = trainer.train(model=model, train_loader=train_loader, epochs=epochs, checkpoint_interval=2)
    result = {"rank": trainer.rank, "world_size": trainer.world_size, "digest": trainer.param_digest(),
              "resumed_from": trainer.resumed_from, "epochs": [r["epoch"] for r in history],
              "checkpoint_dir": str(trainer.checkpoint_dir)}
    trainer.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{result['rank']}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
