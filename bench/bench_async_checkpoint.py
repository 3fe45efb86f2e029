"""Asynchronous checkpoints: how long training is blocked per save, and how fast it steps while a write runs.

    python bench/bench_async_checkpoint.py [--mb 512] [--saves 4] [--results bench/RESULTS.md]

The state is bench_checkpoint.py's (~537 MB of fp32 Linear layers and Adam moments); a "training step"
is a fixed single-threaded torch workload (~tens of ms), shorter than a save. Every `--every` steps the
loop checkpoints the way DistributedTrainer does: it snapshots the state (CPU clones), then either saves
it (sync: HDF5CheckpointStore.save, incl. checksums, fsyncs, rename, pointer) or hands it to a
BackgroundSaver (async: the same save in a thread; the snapshot
reuses the tensors of the previous one, already written). Blocked = the time the training thread spends in
the checkpoint call. Throughput is compared between steps that start while a background write runs and
the steps of a run with no checkpoints at all, in the same process. Ratios are against the sync
baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_checkpoint import make_state, state_bytes

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.checkpoint.background import BackgroundSaver
from hpc_train.runtime.comm.base import local_cpu_copy

WIDTH = 384  # the step's matrices


def make_step() -> Any:
    a = torch.randn(WIDTH, WIDTH)

    def step() -> None:
        x = a
        for _ in range(24):
            x = torch.relu(x @ a) / WIDTH
    return step


def train(steps: int, every: int | None, save: Any, step: Any, saver: BackgroundSaver | None) -> dict[str, Any]:
    """Run `steps` steps, checkpointing every `every`; per-step seconds (split by a write in flight) and blocks."""
    plain, during, blocked = [], [], []
    for i in range(1, steps + 1):
        in_flight = saver is not None and saver.in_flight
        started = time.perf_counter()
        step()
        (during if in_flight else plain).append(time.perf_counter() - started)
        if every and i % every == 0:
            started = time.perf_counter()
            save(i)
            blocked.append(time.perf_counter() - started)
    if saver is not None:
        saver.wait()
    return {"plain": plain, "during": during, "blocked": blocked}


def run(total_mb: int, saves: int, every: int, workdir: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    state = make_state(total_mb)
    step = make_step()
    for _ in range(3):
        step()  # warm-up
    started = time.perf_counter()
    for _ in range(20):
        step()
    step_s = (time.perf_counter() - started) / 20
    steps = saves * every
    res: dict[str, Any] = {"nbytes": state_bytes(state), "step_s": step_s, "every": every, "steps": steps}
    res["none"] = train(steps, None, None, step, None)
    sync_store = HDF5CheckpointStore(workdir / "sync", keep_last=2)
    res["sync"] = train(steps, every, lambda i: sync_store.save(local_cpu_copy(state), step=i), step, None)
    async_store = HDF5CheckpointStore(workdir / "async", keep_last=2)
    saver = BackgroundSaver(async_store)
    spare: dict[str, Any] = {}

    def snapshot_and_submit(i: int) -> None:  # as DistributedTrainer: the written snapshot takes the copies
        saver.wait()
        spare["state"] = local_cpu_copy(state, spare.get("state"))
        saver.submit(spare["state"], step=i)

    res["async"] = train(steps, every, snapshot_and_submit, step, saver)
    res["async_waits"] = saver.waits
    return res


def report(res: dict[str, Any]) -> str:
    med = statistics.median
    sync_blocked, async_blocked = med(res["sync"]["blocked"]), med(res["async"]["blocked"])
    base_rate = 1 / med(res["none"]["plain"])
    during = res["async"]["during"]
    during_rate = 1 / med(during) if during else float("nan")
    gb = res["nbytes"] / 1e9
    lines = [
        "## Asynchronous checkpoints",
        "",
        (f"`python bench/bench_async_checkpoint.py`, {datetime.date.today().isoformat()}, {os.cpu_count()} cores "
         f"({platform.processor() or platform.machine()}), torch {torch.__version__}, state {res['nbytes'] / 1e6:.0f} MB "
         f"(bench_checkpoint.py's), temp dir on the repo's disk; a step is one thread of {WIDTH}x{WIDTH} matmuls, "
         f"{res['step_s'] * 1000:.0f} ms alone; a checkpoint every {res['every']} steps, {len(res['sync']['blocked'])} "
         f"per mode, {res['steps']} steps per run (no checkpoints, sync, async); medians; 1-min load average "
         f"{res['loadavg'][0]:.1f} before, {res['loadavg'][1]:.1f} after (the machine was shared with other work)."),
        "",
        "| what | median | min-max | ratio (vs sync / vs no checkpoints) |",
        "|---|---:|---:|---|",
        (f"| training blocked per save, sync (snapshot + save incl. fsync) | {sync_blocked:.3f} s | "
         f"{min(res['sync']['blocked']):.3f}-{max(res['sync']['blocked']):.3f} s | "
         f"{gb / sync_blocked:.2f} GB/s |"),
        (f"| training blocked per save, async (snapshot + hand-off) | {async_blocked:.3f} s | "
         f"{min(res['async']['blocked']):.3f}-{max(res['async']['blocked']):.3f} s | "
         f"{async_blocked / sync_blocked:.2f}x sync (target <= 0.1x) |"),
        f"| steps/s, no checkpoints | {base_rate:.1f} | | |",
        (f"| steps/s while a background write runs ({len(during)} steps) | {during_rate:.1f} | | "
         f"{during_rate / base_rate:.2f}x no checkpoints (target >= 0.9x) |"),
        "",
        (f"Saves that had to wait for the previous write: {res['async_waits']}. The async block is the snapshot "
         "(a copy of every tensor into the previous snapshot's, as DistributedTrainer does) plus starting the thread; the "
         "write, its checksums and fsyncs then share the cores with training."),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=512, help="state size in MB (default 512)")
    ap.add_argument("--saves", type=int, default=4, help="checkpoints per mode (default 4)")
    ap.add_argument("--every", type=int, default=0, help="steps between checkpoints (default: a save's worth x4)")
    ap.add_argument("--dir", type=Path, default=REPO, help="where the temp dir goes (not /dev/shm)")
    ap.add_argument("--results", type=Path, help="write the section into this RESULTS.md")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix=".bench-async-", dir=args.dir))
    load_before = os.getloadavg()[0]
    try:
        every = args.every or 0
        if not every:  # time one sync save, so that writes finish between checkpoints
            probe = make_state(args.mb)
            started = time.perf_counter()
            HDF5CheckpointStore(workdir / "probe", keep_last=1).save(local_cpu_copy(probe), step=0)
            save_s = time.perf_counter() - started
            del probe
            shutil.rmtree(workdir / "probe")
            step = make_step()
            started = time.perf_counter()
            for _ in range(10):
                step()
            every = max(2, round(4 * save_s / ((time.perf_counter() - started) / 10)))
        res = run(args.mb, args.saves, every, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    res["loadavg"] = (load_before, os.getloadavg()[0])
    section = report(res)
    print(section)
    if args.results:
        from _results import write_section

        write_section(args.results, section)


if __name__ == "__main__":
    main()
