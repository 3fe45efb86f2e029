"""Sharded (FSDP) vs ddp on 2 ranks: peak memory per rank and step time for the same model.

    python bench/bench_fsdp.py [--repeats 2] [--write]

Each measurement is `mpirun -np 2` of this script's --worker: DistributedTrainer trains an MLP
784-2048-2048-2048-2048-10 (14.2 M parameters, Adam) on random data, 1 thread per rank, gloo.
Peak memory is the resident-set high-water mark (VmHWM) of each rank, reset (/proc/self/clear_refs)
after the first optimizer step, minus the resident set before the model was built: parameters,
gradients, optimizer state, activations and communication buffers of steady-state training. It is
measured in runs of its own with a fixed glibc mmap threshold, so that freed buffers leave the
resident set at once; that costs an mmap per buffer, so step times come from separate runs with
the default allocator (median epoch time / steps, first epoch dropped). Strategies alternate.
`fsdp-meta` is fsdp with rank 1 building the model on the meta device (as `hpc-train` jobs do):
the model's resident size once built (VmRSS after building, same baseline) shows what that saves,
and the start-up peak (VmHWM up to the end of the first step) whether it lowers the peak.
--write replaces "## Sharded training (FSDP)" in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTION = "## Sharded training (FSDP)"
HIDDEN, BATCH, STEPS, EPOCHS = [2048, 2048, 2048, 2048], 64, 12, 4


def vm_kib(field: str) -> int:
    """A VmRSS/VmHWM-style line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(variant: str, out: Path) -> None:
    from contextlib import nullcontext

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from hpc_train.models.mlp import MLP
    from hpc_train.runtime import DistributedTrainer, detect_environment

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n = BATCH * STEPS * 2  # two ranks
    data = TensorDataset(torch.randn(n, 784, generator=gen), torch.randint(0, 10, (n,), generator=gen))
    baseline_kib = vm_kib("VmRSS")  # interpreter, torch, MPI and the data: the same for both strategies
    torch.manual_seed(0)
    strategy = variant.removesuffix("-meta")
    on_meta = variant.endswith("-meta") and detect_environment().global_rank != 0
    with torch.device("meta") if on_meta else nullcontext():
        model = MLP(784, HIDDEN, 10)
    built_kib = vm_kib("VmRSS")
    calls = {"n": 0}
    startup_kib = [0]

    def after_step() -> bool:  # polled after every optimizer step: reset the peak after the first
        calls["n"] += 1
        if calls["n"] == 1:
            startup_kib[0] = vm_kib("VmHWM")
            Path("/proc/self/clear_refs").write_text("5")
        return False

    trainer = DistributedTrainer(strategy=strategy, optimizer="adam", learning_rate=1e-4, should_stop=after_step)
    history = trainer.train(model, DataLoader(data, batch_size=BATCH, shuffle=True), EPOCHS)
    peak_kib = vm_kib("VmHWM")
    result = {"strategy": variant, "rank": trainer.rank, "peak_mib": (peak_kib - baseline_kib) / 1024,
              "startup_peak_mib": (startup_kib[0] - baseline_kib) / 1024, "built_mib": (built_kib - baseline_kib) / 1024,
              "state_bytes": trainer.state_bytes(),
              "step_s": [record["duration"] / STEPS for record in history[1:]]}
    del model
    trainer.close()
    (out / f"{variant}-rank{result['rank']}.json").write_text(json.dumps(result))


def measure(strategy: str, out: Path, *, memory: bool) -> list[dict[str, Any]]:
    from hpc_train.runtime.launch import mpirun_command

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    if memory:
        # A fixed mmap threshold: glibc returns every freed large buffer to the system at once, so the
        # resident set follows live memory (with its default dynamic threshold, buffers freed while
        # sharding stay resident and would be counted as training memory).
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    cmd = mpirun_command(2, [sys.executable, __file__, "--worker", strategy, str(out)], environ=env,
                         forward=["MALLOC_MMAP_THRESHOLD_"])
    subprocess.run(cmd, check=True, env=env, timeout=600)
    return [json.loads((out / f"{strategy}-rank{r}.json").read_text()) for r in (0, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("STRATEGY", "OUT"))
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return
    import torch

    variants = ("ddp", "fsdp", "fsdp-meta")
    runs: dict[str, list[list[dict[str, Any]]]] = {v: [] for v in variants}  # timed runs
    memory_runs: dict[str, list[list[dict[str, Any]]]] = {v: [] for v in variants}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for strategy in variants if i % 2 == 0 else variants[::-1]:
                runs[strategy].append(measure(strategy, Path(tmp), memory=False))
                memory_runs[strategy].append(measure(strategy, Path(tmp), memory=True))
                print(strategy, "peak MiB", [r["peak_mib"] for r in memory_runs[strategy][-1]], "start-up peak MiB",
                      [r["startup_peak_mib"] for r in memory_runs[strategy][-1]],
                      "step s", [statistics.median(r["step_s"]) for r in runs[strategy][-1]], flush=True)
    load_after = os.getloadavg()[0]

    def peak(strategy: str) -> float:  # the larger rank's peak, median over runs
        return statistics.median(max(r["peak_mib"] for r in run) for run in memory_runs[strategy])

    def startup(strategy: str, rank: int, field: str = "startup_peak_mib") -> float:  # median over runs
        return statistics.median(run[rank][field] for run in memory_runs[strategy])

    def step(strategy: str) -> float:
        return statistics.median(s for run in runs[strategy] for s in run[0]["step_s"])

    def state_mib(strategy: str) -> float:
        state = runs[strategy][0][0]["state_bytes"]
        return (state["parameters"] + state["optimizer"]) / 2**20

    n_params = runs["ddp"][0][0]["state_bytes"]["parameters"] // 4  # ddp holds them all, float32
    rows = [f"| {name} | {state_mib(s):.0f} | {peak(s):.0f} | {startup(s, 0, 'built_mib'):.0f} / "
            f"{startup(s, 1, 'built_mib'):.0f} | {startup(s, 0):.0f} / {startup(s, 1):.0f} | {step(s) * 1e3:.0f} |"
            for name, s in (("ddp", "ddp"), ("model_parallel (fsdp), every rank builds the model", "fsdp"),
                            ("model_parallel (fsdp), rank 1 on the meta device", "fsdp-meta"))]
    section = (
        f"{SECTION}\n\n`python bench/bench_fsdp.py --write` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, gloo, 2 ranks under mpirun, 1 thread each; 1-min load average "
        f"{load_before:.1f} before, {load_after:.1f} after). MLP 784-{'-'.join(map(str, HIDDEN))}-10 "
        f"({n_params / 1e6:.1f} M parameters, {n_params * 4 / 2**20:.0f} MiB in float32), Adam, batch {BATCH} per "
        f"rank, {STEPS} steps an epoch, {EPOCHS} epochs (the first dropped), {args.repeats} runs of each, "
        "alternating. Peak = VmHWM of the larger rank after the first step minus its resident set before the "
        "model was built, in runs with a fixed glibc mmap threshold (`MALLOC_MMAP_THRESHOLD_=131072`, so freed "
        "buffers leave the resident set); step times from runs with the default allocator.\n\n"
        "| strategy | parameters + Adam state per rank (MiB) | peak training memory per rank (MiB) | "
        "model built, rank 0 / rank 1 (MiB) | start-up peak, rank 0 / rank 1 (MiB) | step time (ms) |\n"
        "|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"fsdp / ddp: state {state_mib('fsdp') / state_mib('ddp'):.2f}×, peak memory "
        f"{peak('fsdp') / peak('ddp'):.2f}×, step time {step('fsdp') / step('ddp'):.2f}×. Sharding saves the "
        "state of all but one shard and DDP's gradient buckets; it pays an all-gather of every block in the "
        "forward and again in the backward, and a reduce-scatter instead of an allreduce. Rank 1 on the meta "
        f"device holds {startup('fsdp-meta', 1, 'built_mib'):.0f} MiB of the built model against "
        f"{startup('fsdp', 1, 'built_mib'):.0f} MiB; its start-up peak (building, sharding, first step) is "
        f"{startup('fsdp-meta', 1):.0f} against {startup('fsdp', 1):.0f} MiB: here the first step needs more "
        "than the whole model, so the saving shows only for models large against one step's working set. "
        "Rank 0 builds the model whole either way.\n"
    )
    print(section)
    if args.write:
        from _results import write_section

        write_section(REPO / "bench" / "RESULTS.md", section)


if __name__ == "__main__":
    main()
