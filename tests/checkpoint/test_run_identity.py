"""A checkpoint knows whose it is: runs that share a `checkpoint.dir` neither resume from nor prune each
other's files, and pruning never deletes the newest checkpoint that loads.

`hpc-train run` as a user types it (configs/mlp.yaml, small), and the store below it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.checkpoint.identity import run_identity
from hpc_train.spec import load_spec

pytestmark = pytest.mark.checkpoint

REPO = Path(__file__).resolve().parents[2]
HPC_TRAIN = str(Path(sys.executable).parent / "hpc-train")
SPEC = REPO / "configs" / "mlp.yaml"
SMALL = ["training.epochs=2", "training.early_stopping=null", "model.hidden_sizes=[16]", "data.batch_size=64",
         "resources.cpus_per_task=1", "checkpoint.interval=1", "checkpoint.keep_last=1"]


def run(tmp_path: Path, label: str, shared: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    sets = [w for item in [*SMALL, f"checkpoint.dir={shared}", *overrides] for w in ("--set", item)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI"))}
    return subprocess.run([HPC_TRAIN, "--home", str(tmp_path / "home"), "run", str(SPEC), *sets,
                           "--run-dir", str(tmp_path / label), "--json"],
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of every file in the folder."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def owners(folder: Path) -> set[str]:
    store = HDF5CheckpointStore(folder, keep_last=None)
    return {str(store.load(p).meta.get("run_identity")) for p in store.list()}  # type: ignore[union-attr]


@pytest.mark.timeout(300)
def test_another_run_in_the_same_folder_is_refused_and_its_files_stay(tmp_path: Path) -> None:
    shared = tmp_path / "scratch-ckpt"
    first = run(tmp_path, "first", shared)
    assert first.returncode == 0, first.stderr
    before = snapshot(shared)
    assert any(name.endswith(".h5") for name in before)

    second = run(tmp_path, "second", shared, "training.learning_rate=0.01")
    assert second.returncode == 2, second.stderr
    message = second.stderr
    assert str(shared) in message and "belongs to another run" in message, message
    ours = run_identity(load_spec(SPEC, [*SMALL, "training.learning_rate=0.01"])).hash
    theirs = run_identity(load_spec(SPEC, SMALL)).hash
    assert ours != theirs and ours in message and theirs in message, message
    base_lr = load_spec(SPEC, SMALL).training.learning_rate
    assert f"training.learning_rate: {base_lr!r} there, 0.01 here" in message, message
    assert message.count("belongs to another run") == 1  # one message, not one per rank or a traceback
    assert "Traceback" not in message
    assert snapshot(shared) == before  # nothing written, nothing pruned
    assert not (tmp_path / "second" / "results.json").exists()

    # The same run again (more epochs) is the same run: it resumes.
    again = run(tmp_path, "again", shared, "training.epochs=3")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed_from_step"] is not None


@pytest.mark.timeout(300)
def test_auto_resume_false_starts_afresh_and_prunes_only_its_own_files(tmp_path: Path) -> None:
    shared = tmp_path / "scratch-ckpt"
    assert run(tmp_path, "first", shared).returncode == 0
    theirs = {name: stat for name, stat in snapshot(shared).items() if name.endswith(".h5")}
    # Another run (another seed, and batch 32: its step numbers differ from the first's, since two runs that
    # write the same step into one folder still write the same file name) with keep_last 1.
    other = run(tmp_path, "other", shared, "training.seed=1", "data.batch_size=32", "checkpoint.auto_resume=false")
    assert other.returncode == 0, other.stderr
    results = json.loads(other.stdout)
    assert results["resumed_from_step"] is None and results["epochs_run"] == 2
    after = snapshot(shared)
    assert all(after.get(name) == stat for name, stat in theirs.items()), (theirs, after)
    assert len(owners(shared)) == 2  # one (pruned to keep_last 1) checkpoint of each run


def write_state(step: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((4,), float(step))}


def test_a_corrupt_newer_file_never_costs_the_newest_loadable_one(tmp_path: Path) -> None:
    """keep_last 1, a corrupt step 150 and a new save at step 50: the save at 50 stays (it used to be pruned,
    leaving only the corrupt file)."""
    store = HDF5CheckpointStore(tmp_path, keep_last=1)
    store.save({"model": write_state(40)}, step=40)
    corrupt = store.path_for(150)
    corrupt.write_bytes(b"not an HDF5 file, as a crash on a network filesystem can leave one" * 50)
    with pytest.warns(RuntimeWarning, match="skipping checkpoint"):
        assert store.load().step == 40  # type: ignore[union-attr]
    store.save({"model": write_state(50)}, step=50)  # the resumed run's next checkpoint
    assert corrupt.exists()  # left for a person to look at; never counted as a good one
    assert store.steps() == [50]  # 40 pruned (keep_last 1 of the loadable ones), 50 kept
    with pytest.warns(RuntimeWarning, match="skipping checkpoint"):
        loaded = store.load()
    assert loaded is not None and loaded.step == 50


def test_prune_keeps_other_runs_files(tmp_path: Path) -> None:
    mine = HDF5CheckpointStore(tmp_path, keep_last=1, run_identity="mine")
    for step in (10, 30):
        HDF5CheckpointStore(tmp_path, keep_last=None).save({"model": write_state(step)}, step=step,
                                                           meta={"run_identity": "theirs"})
    for step in (20, 40):
        mine.save({"model": write_state(step)}, step=step, meta={"run_identity": "mine"})
    assert mine.steps() == [10, 30, 40]  # theirs untouched, mine pruned to the newest one


@pytest.mark.parametrize("changed", ["training.learning_rate=0.5", "model.hidden_sizes=[8]", "data.batch_size=8",
                                     "distributed.strategy=fsdp", "training.seed=3"])
def test_identity_follows_what_changes_the_numbers(changed: str) -> None:
    base = run_identity(load_spec(SPEC, SMALL))
    assert run_identity(load_spec(SPEC, [*SMALL, changed])).hash != base.hash


@pytest.mark.parametrize("same", ["training.epochs=9", "resources.nodes=2", "resources.time=02:00:00",
                                  "training.threads=2", "name=renamed", "checkpoint.keep_last=5"])
def test_identity_ignores_what_does_not(same: str) -> None:
    assert run_identity(load_spec(SPEC, [*SMALL, same])).hash == run_identity(load_spec(SPEC, SMALL)).hash
