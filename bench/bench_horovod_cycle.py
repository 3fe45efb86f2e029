"""Horovod training throughput at its default cycle time vs HOROVOD_CYCLE_TIME=0.02 ms, 2 ranks.

    python bench/bench_horovod_cycle.py [--rounds 2] [--widths 256 1024]

Each launch is `mpirun -np 2` of DistributedTrainer(strategy="horovod") on an MLP 784-W-W-10 (Adam,
batch 64 a rank, 30 steps an epoch, 1 thread a rank, 6 epochs); rank 0 reports the median rate of
epochs 2-6. Settings take turns, so load from other processes hits both alike. Prints a table for
bench/RESULTS.md (section "Allreduce").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hpc_train.render.sbatch import TORCH_ENV  # after the path: this checkout (imports no torch)

BATCH, STEPS, EPOCHS = 64, 30, 6
SETTINGS = {"default (1 ms)": {}, "HOROVOD_CYCLE_TIME=0.02": {"HOROVOD_CYCLE_TIME": "0.02"}}
BASE = {"OMP_NUM_THREADS": "1", "OMPI_MCA_mpi_yield_when_idle": "1", **TORCH_ENV}


def rank_main(width: int) -> None:
    """One rank: train, and on rank 0 print the median samples/s of the epochs after the first."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hpc_train.models.mlp import MLP
    from hpc_train.runtime import DistributedTrainer

    torch.set_num_threads(1)
    stamps = [time.perf_counter()]
    trainer = DistributedTrainer(strategy="horovod", optimizer="adam", learning_rate=1e-3,
                                 on_epoch_end=lambda record: stamps.append(time.perf_counter()))
    n = BATCH * STEPS * trainer.world_size
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 784, generator=gen), torch.randint(0, 10, (n,), generator=gen))
    stamps[0] = time.perf_counter()
    trainer.train(MLP(784, [width, width], 10), DataLoader(data, batch_size=BATCH), epochs=EPOCHS)
    epochs = [b - a for a, b in itertools.pairwise(stamps)][1:]
    if trainer.comm.rank == 0:
        print("RESULT " + json.dumps(n / statistics.median(epochs)), flush=True)
    trainer.close()


def launch(width: int, extra: dict[str, str]) -> float:
    """samples/s of one 2-rank launch."""
    from hpc_train.commands import run_command
    from hpc_train.runtime.launch import mpirun_command

    env = {**BASE, **extra, "PYTHONPATH": str(REPO)}
    argv = mpirun_command(2, [sys.executable, __file__, "--rank", str(width)], forward=list(env),
                          environ={**os.environ, **env})
    out = run_command(argv, timeout=300, env=env).stdout
    return float(next(ln for ln in out.splitlines() if ln.startswith("RESULT ")).removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank:
        rank_main(args.rank)
        return
    if "HOROVOD_CYCLE_TIME" in os.environ:
        raise SystemExit("unset HOROVOD_CYCLE_TIME first: the settings compared set it themselves")
    rates: dict[tuple[int, str], list[float]] = {}
    for width in args.widths:
        for round_ in range(args.rounds):
            for name, extra in SETTINGS.items():
                rate = launch(width, extra)
                rates.setdefault((width, name), []).append(rate)
                print(f"round {round_ + 1} width {width} {name}: {rate:,.0f} samples/s", flush=True)
    print("\n| MLP | setting | samples/s per launch | × default (medians) |\n|---|---|---|---|")
    for width in args.widths:
        default = statistics.median(rates[(width, "default (1 ms)")])
        for name in SETTINGS:
            values = rates[(width, name)]
            cells = " / ".join(f"{v:,.0f}" for v in values)
            print(f"| 784-{width}-{width}-10 | {name} | {cells} | {statistics.median(values) / default:.2f}× |")


if __name__ == "__main__":
    main()
