"""Allreduce bandwidth, 2 ranks on this machine: Horovod and the DDP paths (gloo; MPI hook) vs mpi4py Allreduce.

    python bench/bench_allreduce.py [--sizes-mb 4 64 256] [--write]

Each variant runs in its own `mpirun -np 2` (Horovod's background thread slows other collectives
in the same process). A rank times in-place float32 sum-allreduces of one buffer; bandwidth is
payload bytes / median time, best of --rounds launches. --write replaces the "## Allreduce" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hpc_train.render.sbatch import TORCH_ENV  # after the path: this checkout (imports no torch)

SECTION = "## Allreduce"
# Every rank gets what an hpc-train torch job exports (torch's buffers on transparent huge pages).
BASE = {"OMP_NUM_THREADS": "1", **TORCH_ENV}
# name -> (implementation, extra environment, what it shows)
VARIANTS: dict[str, tuple[str, dict[str, str], str]] = {
    "mpi4py": ("mpi4py", {}, "baseline: comm.Allreduce(IN_PLACE)"),
    "gloo": ("gloo", {}, "torch.distributed.all_reduce, gloo over loopback TCP (DDP with backend gloo)"),
    "ddp-mpi": ("ddp-mpi", {}, ("hpc-train's DDP comm hook for backend mpi on a bucket: MPI_Allreduce "
                                "(sum; 1/world is in the loss) through mpi4py")),
    "ddp-mpi-4k": ("ddp-mpi", {"THP_MEM_ALLOC_ENABLE": "0"},
                   "ddp-mpi with torch's buffers on 4 KiB pages (THP_MEM_ALLOC_ENABLE=0, torch's default)"),
    "ddp-mpi-fp16": ("ddp-mpi-fp16", {}, ("the same with compression fp16 (cast into a kept float16 buffer, "
                                          "float16 sum op, cast back); GB/s of float32 gradients")),
    "horovod": ("horovod", {}, "hvd.allreduce_(op=Sum), Horovod defaults"),
    "horovod-4k": ("horovod", {"THP_MEM_ALLOC_ENABLE": "0"}, "the same, torch's buffers on 4 KiB pages"),
    "horovod-average": ("horovod-average", {}, "hvd.allreduce_(op=Average): the optimizer's op, one extra scaling pass"),
    "horovod-poll": ("horovod-poll", {},
                     ("allreduce_async_ + hvd.poll with a 50 µs sleep, then synchronize: the main thread "
                      "stops spinning against Horovod's background thread")),
    "horovod-poll-cycle0.02": ("horovod-poll", {"HOROVOD_CYCLE_TIME": "0.02"}, "poll-wait + HOROVOD_CYCLE_TIME=0.02"),
    "horovod-poll-cycle0.1": ("horovod-poll", {"HOROVOD_CYCLE_TIME": "0.1"}, "poll-wait + HOROVOD_CYCLE_TIME=0.1"),
    "horovod-cycle0.1": ("horovod", {"HOROVOD_CYCLE_TIME": "0.1"}, "HOROVOD_CYCLE_TIME=0.1 (ms; default 1)"),
    "horovod-nothreads": ("horovod", {"HOROVOD_MPI_THREADS_DISABLE": "1"},
                          "HOROVOD_MPI_THREADS_DISABLE=1 (MPI_THREAD_SINGLE instead of MULTIPLE)"),
    "horovod-affinity": ("horovod", {"HOROVOD_THREAD_AFFINITY": "0,1"}, "HOROVOD_THREAD_AFFINITY=0,1"),
    "horovod-fusion0": ("horovod", {"HOROVOD_FUSION_THRESHOLD": "0"}, "HOROVOD_FUSION_THRESHOLD=0"),
    "horovod-cycle0": ("horovod", {"HOROVOD_CYCLE_TIME": "0"}, "HOROVOD_CYCLE_TIME=0 (background thread never sleeps)"),
    "horovod-cycle0.005": ("horovod", {"HOROVOD_CYCLE_TIME": "0.005"}, "HOROVOD_CYCLE_TIME=0.005"),
    "horovod-cycle0.01": ("horovod", {"HOROVOD_CYCLE_TIME": "0.01"}, "HOROVOD_CYCLE_TIME=0.01"),
    "horovod-cycle0.02": ("horovod", {"HOROVOD_CYCLE_TIME": "0.02"}, "HOROVOD_CYCLE_TIME=0.02"),
    "horovod-cycle0.02-yield": ("horovod", {"HOROVOD_CYCLE_TIME": "0.02", "OMPI_MCA_mpi_yield_when_idle": "1"},
                                "HOROVOD_CYCLE_TIME=0.02 + OMPI_MCA_mpi_yield_when_idle=1"),
    "horovod-cycle0.05": ("horovod", {"HOROVOD_CYCLE_TIME": "0.05"}, "HOROVOD_CYCLE_TIME=0.05"),
    "horovod-cycle0.5": ("horovod", {"HOROVOD_CYCLE_TIME": "0.5"}, "HOROVOD_CYCLE_TIME=0.5"),
    "horovod-cache0": ("horovod", {"HOROVOD_CACHE_CAPACITY": "0"},
                       "HOROVOD_CACHE_CAPACITY=0 (no response cache: full negotiation every op)"),
    "horovod-nostall": ("horovod", {"HOROVOD_STALL_CHECK_DISABLE": "1"}, "HOROVOD_STALL_CHECK_DISABLE=1"),
    "horovod-cycle0.1-fusion0": ("horovod", {"HOROVOD_CYCLE_TIME": "0.1", "HOROVOD_FUSION_THRESHOLD": "0"},
                                 "HOROVOD_CYCLE_TIME=0.1 + HOROVOD_FUSION_THRESHOLD=0"),
    "horovod-cycle0.1-nothreads": ("horovod", {"HOROVOD_CYCLE_TIME": "0.1", "HOROVOD_MPI_THREADS_DISABLE": "1"},
                                   "HOROVOD_CYCLE_TIME=0.1 + HOROVOD_MPI_THREADS_DISABLE=1"),
}

# The rest are experiments kept for --variants (none moved the numbers beyond the noise here).
DEFAULT_VARIANTS = ["mpi4py", "gloo", "ddp-mpi", "ddp-mpi-4k", "ddp-mpi-fp16", "horovod", "horovod-4k",
                    "horovod-cycle0.02", "horovod-average"]


def rank_main(impl: str, sizes_mb: list[int], repeats: int) -> None:
    """One rank: time allreduces of each size with the given implementation; rank 0 prints JSON."""
    import numpy as np
    import torch

    from hpc_train.runtime.environments import detect_environment

    torch.set_num_threads(1)
    env = detect_environment()
    allreduce: Callable[[Any], Any]
    barrier: Callable[[], Any]
    make: Callable[[int], Any]
    if impl == "mpi4py":
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        allreduce = lambda buf: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        barrier = comm.Barrier
        make = lambda n: np.ones(n, dtype=np.float32)
    elif impl == "gloo":
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://{env.main_address}:{env.main_port}",
                                rank=env.global_rank, world_size=env.world_size)
        allreduce = lambda t: dist.all_reduce(t)
        barrier = dist.barrier
        make = lambda n: torch.ones(n, dtype=torch.float32)
    elif impl.startswith("ddp-mpi"):
        from mpi4py import MPI

        from hpc_train.runtime.comm.ddp import MPIGradients, mpi_allreduce_hook, mpi_fp16_compress_hook

        gradients = MPIGradients(env.global_rank, env.world_size)
        hook = mpi_fp16_compress_hook if impl == "ddp-mpi-fp16" else mpi_allreduce_hook
        allreduce = lambda t: hook(gradients, Bucket(t)).wait()
        barrier = MPI.COMM_WORLD.Barrier
        make = lambda n: torch.ones(n, dtype=torch.float32)
    else:
        import horovod.torch as hvd

        hvd.init()
        op = hvd.Average if impl == "horovod-average" else hvd.Sum
        allreduce = lambda t: hvd.allreduce_(t, op=op)
        if impl == "horovod-poll":
            def allreduce(t: Any) -> None:
                handle = hvd.allreduce_async_(t, op=op)
                while not hvd.poll(handle):
                    time.sleep(50e-6)
                hvd.synchronize(handle)
        barrier = hvd.barrier
        make = lambda n: torch.ones(n, dtype=torch.float32)
    results = {}
    for mb in sizes_mb:
        buf = make(mb * 2**20 // 4)
        times = []
        reps = min(40, max(5, repeats * 64 // max(mb, 1)))  # more of the small, quick ones
        for i in range(2 + reps):
            barrier()
            start = time.perf_counter()
            allreduce(buf)
            if i >= 2:
                times.append(time.perf_counter() - start)
        results[str(mb)] = mb * 2**20 / statistics.median(times) / 1e9
        del buf
    if env.global_rank == 0:
        print("RESULT " + json.dumps(results), flush=True)
    if impl == "gloo":
        import torch.distributed as dist

        dist.destroy_process_group()


class Bucket:
    """What DDP's comm hooks read of a GradBucket: its flat buffer and its index."""

    def __init__(self, buffer: Any) -> None:
        self._buffer = buffer

    def buffer(self) -> Any:
        return self._buffer

    def index(self) -> int:
        return 0


def run_variant(name: str, sizes_mb: list[int], repeats: int) -> dict[str, float]:
    """Launch one variant under mpirun -np 2 and return {size_mb: GB/s}."""
    from hpc_train.commands import run_command
    from hpc_train.runtime.launch import mpirun_command

    impl, extra, _ = VARIANTS[name]
    env = {**BASE, **extra, "PYTHONPATH": str(REPO)}
    argv = mpirun_command(2, [sys.executable, __file__, "--rank", impl, "--repeats", str(repeats),
                              "--sizes-mb", *map(str, sizes_mb)],
                          forward=list(env), environ={**os.environ, **env})
    out = run_command(argv, timeout=170, env=env).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return {k: float(v) for k, v in json.loads(line.removeprefix("RESULT ")).items()}


NOTES = """
Findings (2026-11-26, load 0.7-2; single launches still swing 2-10× (a launch that stalls shows as
0.2-2 GB/s), hence best-of-rounds):
- **DDP with `backend: mpi`** (the row `ddp-mpi`: hpc-train's comm hook, what DDP runs per bucket)
  is 0.97-1.06× of mpi4py at 4, 64 and 256 MB: it is the same MPI_Allreduce on the bucket's memory.
  Two things were needed. The hook sums and the loop folds 1/world into the loss (a divide pass
  over the bucket cost it 0.57×/0.71× at 4/64 MB in an earlier launch), and torch's buffers must sit
  on transparent huge pages like numpy's: torch allocates with 4 KiB pages unless
  THP_MEM_ALLOC_ENABLE=1 (`ddp-mpi-4k`: 0.90-0.94× here, 0.76-0.91× in earlier launches; the
  same MPI_Allreduce from mpi4py on a torch tensor's memory ran 0.82-0.85× of a numpy array's at
  64-256 MB until huge pages were on). hpc-train torch jobs now export THP_MEM_ALLOC_ENABLE=1.
- fp16 over MPI (`ddp-mpi-fp16`, a float16 sum op in torch) moves float32 gradients 1.2× faster
  than mpi4py's float32 at 64-256 MB, 0.84× at 4 MB (the two casts cost more than half the bytes
  save there). numpy's float16 add in the op was 10× slower than torch's.
- gloo (DDP's default on CPU) is TCP over loopback, not shared memory: 0.10× at 4 MB, 0.6× above.
  On 2 pinned cores of an idle 16-core host (torch 2.11, lent machine) gloo was 0.27× / 0.87× /
  0.86× (4.54 / 1.43 / 1.37 GB/s), matching FACTS. No gloo setting closes this.
- **Horovod** (`op=Sum`, 1/world in the loss; `horovod-average` shows Average's extra pass): with
  HOROVOD_CYCLE_TIME=0.02 ms and huge pages it reaches 0.99× / 1.01× at 64 / 256 MB; defaults give
  0.89× / 0.92×, and 4 KiB pages 0.80× / 0.85×. At 4 MB it stays at 0.55× (defaults 0.25×): each op
  waits for the background thread's next cycle and a negotiation round, and while it runs the
  calling thread spins in `synchronize()` (`std::this_thread::yield` in 0.28.1), so two ranks keep
  four threads busy on two cores. Replacing the spin by a poll with a 50 µs sleep was worse (4.97-
  5.29 GB/s vs 6.51-10.15 with the spin, cycle 0.02, three launches each); cycle times 0.005-0.05
  ms all gave 6-8 GB/s against mpi4py's 12-14 (four launches each), and OpenMPI yielding in its
  waits (`horovod-cycle0.02-yield`) 5.3-7.9 against 6.3-9.4 GB/s without (four launches each, one
  stalled in both). **Horovod misses 0.9× at 4 MB here.**
- Whole training (`python bench/bench_horovod_cycle.py --rounds 3`: Horovod, 2 ranks, Adam, batch 64
  a rank, 1 thread a rank, median epoch rate of epochs 2-6, settings taking turns; samples/s per
  launch): MLP 784-256-256-10 (1.1 MB of gradients) 17.8k / 23.2k / 29.3k at the default cycle vs
  26.7k / 33.5k / 34.2k at HOROVOD_CYCLE_TIME=0.02 (**1.45×** the median); MLP 784-1024-1024-10
  (7.4 MB) 6.5k / 6.7k / 6.8k vs 7.0k / 6.5k / 6.1k (0.97×, within the noise). The README
  recommends it for small CPU nodes; it is not a default (a cycle this short trades fusion of many
  small gradients for latency, which a GPU cluster tunes otherwise).
- Target ≥ 0.9× of mpi4py: met by DDP with backend mpi at all three sizes and by Horovod (cycle
  0.02) at 64 and 256 MB; not met by Horovod at 4 MB, nor by gloo at any size.

Horovod 0.28.1 knobs at 4 MB (2026-11-26, earlier, torch's buffers still on 4 KiB pages, load 1.6-4.4; `--sizes-mb 4 64 --rounds 3` and `--sizes-mb 4
--rounds 5 --variants ...`; every launch counted, not just the best; mpi4py in the same launches: median
10.0 GB/s, best 12.9). "Stalled" = a launch whose median op took ~25 ms (0.15-0.25 GB/s).

| env var | launches | 4 MB median GB/s (× mpi4py median) | 4 MB best | stalled | 64 MB median |
|---|---|---|---|---|---|
| (defaults: HOROVOD_CYCLE_TIME=1 ms) | 9 | 1.51 (0.15×) | 2.45 | 3 | 1.91 |
| HOROVOD_CYCLE_TIME=0.5 | 4 | 2.77 (0.28×) | 3.14 | 1 | 1.69 |
| HOROVOD_CYCLE_TIME=0.1 | 9 | 2.10 (0.21×) | 6.88 | 2 | 1.60 |
| HOROVOD_CYCLE_TIME=0.05 | 5 | 6.18 (0.62×) | 7.47 | 0 | — |
| **HOROVOD_CYCLE_TIME=0.02** | 9 | **5.03 (0.50×)** | 7.32 | 0 | 1.97 |
| HOROVOD_CYCLE_TIME=0.01 | 5 | 5.25 (0.52×) | 6.20 | 0 | — |
| HOROVOD_CYCLE_TIME=0 (never sleeps) | 9 | 1.04 (0.10×) | 1.04 | 0 | 1.60 |
| HOROVOD_CACHE_CAPACITY=0 | 4 | 1.55 (0.15×) | 2.12 | 1 | 1.66 |
| HOROVOD_STALL_CHECK_DISABLE=1 | 4 | 1.99 (0.20×) | 2.24 | 0 | 1.71 |
| HOROVOD_FUSION_THRESHOLD=0 | 3 | 0.17 (0.02×) | 1.93 | 2 | 0.73 |
| HOROVOD_THREAD_AFFINITY=0,1 | 3 | 1.75 (0.17×) | 2.26 | 0 | 1.87 |
| CYCLE_TIME=0.1 + FUSION_THRESHOLD=0 | 3 | 2.92 (0.29×) | 5.92 | 0 | 1.95 |
| CYCLE_TIME=0.1 + MPI_THREADS_DISABLE=1 | 3 | 4.25 (0.42×) | 5.93 | 0 | 1.82 |

- Only the cycle time moves 4 MB: 0.01-0.05 ms triples the median (0.15× → 0.5-0.6× of mpi4py) and
  no launch stalled; 0 is worse than the default (the background thread spins against the ranks on
  2 cores). 64 MB is unchanged within the noise (1.6-2.0 GB/s for all); a 256 MB check under load 4
  (2 launches each) was inconclusive. Nothing reaches 0.9× at 4 MB.
- Horovod's idle background thread costs CPU whatever the cycle time: with the main thread asleep,
  each rank used 0.2-0.75 of a core at the default and ~0.5 at 0.02 ms (OpenMPI polls while waiting
  in the per-cycle coordination); `OMPI_MCA_mpi_yield_when_idle=1` did not change that.
- Not usable here: HOROVOD_CPU_OPERATIONS=gloo under mpirun segfaults in GlooAllreduce (no gloo
  context with the MPI controller); HOROVOD_CONTROLLER=gloo under plain mpirun starts two 1-rank
  worlds (it needs horovodrun's rendezvous). 0.28.1 has no other spin/sleep knob (its library
  reads no HOROVOD_SPIN-like variable).
"""


def render(results: dict[str, dict[str, float]], sizes_mb: list[int], rounds: int) -> str:
    """The RESULTS.md section."""
    base = results["mpi4py"]
    head = "| variant | " + " | ".join(f"{s} MB GB/s (× mpi4py)" for s in sizes_mb) + " | what |"
    rows = [head, "|" + "---|" * (len(sizes_mb) + 2)]
    for name, res in results.items():
        cells = [f"{res[str(s)]:.2f} ({res[str(s)] / base[str(s)]:.2f}×)" for s in sizes_mb]
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {VARIANTS[name][2]} |")
    when = time.strftime("%Y-%m-%d")
    return (f"{SECTION}\n\n`python bench/bench_allreduce.py --write` ({when}, {os.cpu_count()} cores, "
            f"2 ranks under mpirun, float32, in-place sum, median of each launch, best of {rounds} launches "
            "taking turns; each variant its own mpirun; OMP_NUM_THREADS=1 and THP_MEM_ALLOC_ENABLE=1 unless the variant says)."
            "\n\n" + "\n".join(rows) + "\n" + NOTES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[4, 64, 256])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="launches per variant; the best is kept")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--write", action="store_true", help="update the section in bench/RESULTS.md")
    parser.add_argument("--rank", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank:
        rank_main(args.rank, args.sizes_mb, args.repeats)
        return
    variants = ["mpi4py", *[v for v in args.variants if v != "mpi4py"]]
    results: dict[str, dict[str, float]] = {}
    for round_ in range(args.rounds):  # variants take turns, so a busy spell hits all of them
        for name in variants:
            got = run_variant(name, args.sizes_mb, args.repeats)
            print(f"round {round_ + 1} {name}", {k: round(v, 2) for k, v in got.items()}, flush=True)
            best = results.setdefault(name, got)
            for size, value in got.items():
                best[size] = max(best[size], value)
    section = render(results, args.sizes_mb, args.rounds)
    print(section)
    if args.write:
        from _results import write_section

        write_section(REPO / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
