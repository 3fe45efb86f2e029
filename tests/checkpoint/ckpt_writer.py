"""Saves checkpoints in a loop until killed; prints each step once its save has returned.

    python ckpt_writer.py DIRECTORY FIRST_STEP

Every tensor encodes the step, so a reader can tell a self-consistent checkpoint from a torn one.
"""

from __future__ import annotations

import sys

import torch

from hpc_train.checkpoint import HDF5CheckpointStore


def state_for(step: int) -> dict[str, object]:
    return {
        "weights": torch.full((64, 64), float(step)),
        "bf16": torch.full((256,), float(step % 200), dtype=torch.bfloat16),
        "optimizer": {"state": {0: {"step": torch.tensor(float(step))}}, "param_groups": [{"lr": 0.1}]},
        "history": [float(s) for s in range(step % 20)],
        "step": step,
    }


def main() -> None:
    directory, step = sys.argv[1], int(sys.argv[2])
    store = HDF5CheckpointStore(directory, keep_last=3)
    print("ready", flush=True)
    while True:
        store.save(state_for(step), step=step, meta={"step": step})
        print(step, flush=True)
        step += 1


if __name__ == "__main__":
    main()
