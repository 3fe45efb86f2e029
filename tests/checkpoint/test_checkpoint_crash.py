"""A writer SIGKILLed at random moments never leaves a checkpoint that is chosen but broken."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from hpc_train.checkpoint import HDF5CheckpointStore

pytestmark = pytest.mark.checkpoint

WRITER = Path(__file__).with_name("ckpt_writer.py")
REPO = Path(__file__).resolve().parents[2]
TOTAL_SAVES = 100


def run_writer_until_killed(directory: Path, first_step: int, rng: random.Random) -> list[int]:
    """Start the writer, let it finish a random number of saves, SIGKILL it somewhere in the next."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(WRITER), str(directory), str(first_step)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        saves_before_kill = rng.choice([0, *range(4, 20)])  # 0: killed inside the very first save
        done = [int(proc.stdout.readline()) for _ in range(saves_before_kill)]
        time.sleep(rng.uniform(0, 0.015))  # a save of this state takes ~5-20 ms, mostly fsyncs
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return done + [int(line) for line in rest.split()]


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_valid_latest(tmp_path: Path) -> None:
    rng = random.Random(1234)
    saved = 0
    kills = 0
    killed_mid_write = 0
    next_step = 0
    deadline = time.monotonic() + 150  # a hang guard; the test takes ~20-30 s on 2 cores
    while saved < TOTAL_SAVES:
        assert time.monotonic() < deadline, f"too slow: {saved} saves in {kills} runs"
        finished = run_writer_until_killed(tmp_path, next_step, rng)
        kills += 1
        saved += len(finished)
        killed_mid_write += any(p.name.endswith(".tmp") for p in tmp_path.iterdir())

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing on disk may look broken after a crash
            store = HDF5CheckpointStore(tmp_path, keep_last=3)
            assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "stale tmp left"
            ck = store.load()
            listed = store.list()
            for path in listed:  # every file under a final name is whole: atomic rename
                assert store.load(path) is not None
        if ck is None:
            assert not finished and next_step == 0
            continue
        assert ck.path.name == f"ckpt-{ck.step:09d}.h5" and store.latest() == ck.path
        last_done = finished[-1] if finished else next_step - 1
        # A save that returned is durable; the one in flight at the kill may or may not have landed.
        assert last_done <= ck.step <= last_done + 1
        assert torch.equal(ck.state["weights"], torch.full((64, 64), float(ck.step)))
        assert torch.equal(ck.state["bf16"], torch.full((256,), float(ck.step % 200), dtype=torch.bfloat16))
        assert ck.state["optimizer"]["state"][0]["step"].item() == ck.step
        assert ck.state["history"] == [float(s) for s in range(ck.step % 20)]
        assert ck.state["step"] == ck.meta["step"] == ck.step
        assert [int(p.name[5:14]) for p in listed] == list(range(max(0, ck.step - len(listed) + 1), ck.step + 1))
        next_step = ck.step + 1

    assert saved >= TOTAL_SAVES and kills >= 5, f"{saved} saves in {kills} runs"
    assert killed_mid_write >= 2, f"only {killed_mid_write} of {kills} kills landed inside a save"
