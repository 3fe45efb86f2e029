"""checkpoint.async_save: interval checkpoints written by a background thread while training goes on.

A SIGUSR1 that lands while a write is in flight waits for it, checkpoints, and the rerun resumes to the
bits of an uninterrupted run; an exception leaving train() waits for the write in flight; a SIGKILL at
random moments of background writes always leaves a loadable latest checkpoint.

The model is configs/mlp.yaml's MLP widened to 1024x1024 (about 13 MB of parameters and Adam state),
so a save (~20-60 ms with its fsyncs) outlasts a training step (a few ms at batch 16): with a
checkpoint every step there is nearly always a write in flight.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
from test_local_preemption import HPC_TRAIN, PREEMPTED_EXIT_CODE, SPEC, env, sets, wait_until
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.models.mlp import MLP
from hpc_train.runtime import DistributedTrainer
from hpc_train.runtime.environments import SingleProcessEnvironment

pytestmark = pytest.mark.checkpoint

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 2
STEPS_PER_EPOCH = 90  # ceil(1437 training samples / batch 16)
TRAINING = [f"training.epochs={EPOCHS}", "training.early_stopping=null", "model.hidden_sizes=[1024,1024]",
            "data.batch_size=16", "resources.cpus_per_task=1", "checkpoint.unit=steps", "checkpoint.interval=1",
            "checkpoint.keep_last=2"]
WAITED = re.compile(r"waiting for the checkpoint of step (\d+) still being written")
PREEMPTED = re.compile(r"checkpoint \(preempted\) at step (\d+)")


def run_argv(home: Path, run_dir: Path, *overrides: str) -> list[str]:
    return [HPC_TRAIN, "--home", str(home), "-v", "run", str(SPEC), *sets([*TRAINING, *overrides]),
            "--run-dir", str(run_dir), "--json"]


@pytest.mark.timeout(300)
def test_sigusr1_during_a_background_write_waits_for_it_and_the_rerun_resumes_bitwise(tmp_path: Path) -> None:
    reference = subprocess.Popen(run_argv(tmp_path / "home", tmp_path / "reference"), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env())
    run_dir = tmp_path / "run"
    argv = run_argv(tmp_path / "home", run_dir, "checkpoint.async_save=true")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        checkpoints = run_dir / "checkpoints"
        wait_until(lambda: (checkpoints / "latest").exists() or proc.poll() is not None, 120, "the first checkpoint")
        time.sleep(0.5)  # some tens of steps on: a background write is (nearly always) running
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, f"exit {proc.returncode}\n{err[-3000:]}"
    # The preemption checkpoint first waited for the write in flight: the last wait comes right before it.
    lines = [line for line in err.splitlines() if WAITED.search(line) or PREEMPTED.search(line)]
    assert lines and PREEMPTED.search(lines[-1]), err[-3000:]
    assert len(lines) >= 2 and WAITED.search(lines[-2]), "the signal did not land during a background write"
    in_flight = int(WAITED.search(lines[-2]).group(1))  # type: ignore[union-attr]
    stopped = int(PREEMPTED.search(lines[-1]).group(1))  # type: ignore[union-attr]
    assert stopped - 1 <= in_flight <= stopped
    assert stopped < EPOCHS * STEPS_PER_EPOCH, "the signal came too late to test anything"
    store = HDF5CheckpointStore(checkpoints, keep_last=None)
    assert store.steps()[-1] == stopped and not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    latest = store.load()
    assert latest is not None and latest.step == stopped and latest.meta["reason"] == "preempted"

    again = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env(), check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from checkpoint at step {stopped} " in again.stderr
    results = json.loads(again.stdout)
    assert results["background_checkpoints"] > 0
    ref_out, ref_err = reference.communicate(timeout=180)
    assert reference.returncode == 0, ref_err[-3000:]
    reference_results = json.loads(ref_out)
    assert reference_results["background_checkpoints"] == 0  # synchronous saves there
    assert results["param_digests"] == reference_results["param_digests"]


def _digits_loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 64, generator=generator)
    y = torch.randint(0, 10, (512,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.mark.timeout(120)
def test_an_exception_in_training_waits_for_the_write_in_flight(tmp_path: Path) -> None:
    calls = {"n": 0}

    def failing_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 11:  # the step right after the checkpoint of step 10 went to the background
            raise RuntimeError("boom in training")
        return torch.nn.functional.cross_entropy(logits, target)

    torch.manual_seed(0)
    model = MLP(64, [4096, 4096], 10)  # ~200 MB with Adam: its write takes far longer than a step
    trainer = DistributedTrainer(environment=SingleProcessEnvironment(), checkpoint_dir=tmp_path, loss_fn=failing_loss,
                                 async_checkpoints=True)
    with pytest.raises(RuntimeError, match="boom in training"):
        trainer.train(model, _digits_loader(), epochs=1, checkpoint_interval=10, checkpoint_unit="steps")
    # Right as the exception arrives here: the write had been waited for, it is durable and latest.
    assert trainer.checkpoint_waits == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("checkpoint-writer")]
    assert (tmp_path / "latest").read_text().strip() == "ckpt-000000010.h5"
    loaded = HDF5CheckpointStore(tmp_path, keep_last=None).load()
    assert loaded is not None and loaded.step == 10 and trainer.background_checkpoints == 1
    trainer.close()


WRITER = Path(__file__).with_name("async_trainer.py")


def _pointer(directory: Path) -> str:
    try:
        return (directory / "latest").read_text()
    except OSError:
        return ""
KILLS = 20


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_during_background_writes_leaves_a_loadable_latest(tmp_path: Path) -> None:
    rng = random.Random(4321)
    child_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                 "OMP_NUM_THREADS": "1"}
    killed_mid_write = 0
    newest = 0
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(WRITER), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                                env=child_env)
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "training"
            before = _pointer(tmp_path)  # wait for this run's first checkpoint: writes follow one another now
            wait_until(lambda before=before, proc=proc: _pointer(tmp_path) != before or proc.poll() is not None,
                       60, "a checkpoint")
            time.sleep(rng.uniform(0, 0.1))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        killed_mid_write += any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing under a final name may be broken
            store = HDF5CheckpointStore(tmp_path, keep_last=2)  # removes the dead writer's temporary file
            assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            checkpoint = store.load()
            for path in store.list():
                assert store.load(path) is not None
        if checkpoint is None:  # killed before the first save landed
            assert newest == 0
            continue
        # `latest` names a whole file: this one, or (killed between the rename and the pointer) the one before
        pointed = store.load(tmp_path / _pointer(tmp_path).strip())
        assert pointed is not None and checkpoint.step - 1 <= pointed.step <= checkpoint.step
        assert checkpoint.step >= newest  # each run resumed from the last one's latest and went on
        newest = checkpoint.step
    assert killed_mid_write >= KILLS // 4, f"only {killed_mid_write} of {KILLS} kills landed during a write"
    assert newest > 0


def test_a_failed_background_write_is_raised_by_the_next_wait_and_moves_nothing(tmp_path: Path) -> None:
    from hpc_train.checkpoint.background import BackgroundSaver

    store = HDF5CheckpointStore(tmp_path / "ckpt", keep_last=2)
    saver = BackgroundSaver(store)
    saver.submit({"w": torch.ones(4)}, step=1)
    assert saver.wait() == store.path_for(1)
    (tmp_path / "ckpt" / "ckpt-000000002.h5").mkdir()  # the next file's name is taken by a folder
    saver.submit({"w": torch.full((4,), 2.0)}, step=2)
    with pytest.raises(OSError):
        saver.wait()
    assert saver.wait() is None  # raised once
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "ckpt-000000001.h5"
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.endswith(".tmp")]
    with pytest.warns(RuntimeWarning, match="skipping checkpoint"):  # the folder in the way
        loaded = store.load()
    assert loaded is not None and loaded.step == 1 and torch.equal(loaded.state["w"], torch.ones(4))
