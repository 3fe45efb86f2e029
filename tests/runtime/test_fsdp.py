"""Sharded training (strategy fsdp / model_parallel) on two ranks under `mpirun -np 2`, gloo on CPU.

test_distributed.py runs the checks every strategy shares (identical parameters, accumulation, fp16
compression, AMP with gradient checkpointing, bitwise resume after preemption) for fsdp too; here are
the sharded-only ones: each rank holds half the state, the result equals ddp's, and sharded
checkpoints (one file per rank) resume from a step every rank has, onto the same world size only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ranks import WORKER, load_params, results, run_ranks
from support import PYTHON, REPO, mpirun_argv

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.commands import run_command

pytestmark = pytest.mark.mpi

# 256 samples, batch 16 -> 8 steps an epoch per rank; wide enough that sharding dominates padding.
COMMON = {"hidden": [64, 64], "optimizer": "adam", "lr": 0.01, "epochs": 3, "dropout": 0.1, "val": True}


def test_each_rank_holds_half_the_state_and_the_result_equals_ddp(tmp_path: Path) -> None:
    runs = [{"name": "ddp", "strategy": "ddp"}, {"name": "fsdp", "strategy": "fsdp"}]
    run_ranks({**COMMON, "runs": runs}, tmp_path, np=2)
    ddp, fsdp = results(tmp_path, 2, "ddp"), results(tmp_path, 2, "fsdp")
    whole = ddp[0]["state_bytes"]
    assert whole["parameters"] == fsdp[0]["n_params"] * 4 and whole["optimizer"] > 2 * whole["parameters"]
    for rank in fsdp:
        for kind in ("parameters", "optimizer"):
            share = rank["state_bytes"][kind] / whole[kind]
            assert 0.45 < share < 0.55, (kind, rank["state_bytes"], whole)
    # The shards add up to the whole, give or take the padding of each parameter to a multiple of 2 rows.
    params = sum(r["state_bytes"]["parameters"] for r in fsdp)
    assert whole["parameters"] <= params < whole["parameters"] * 1.02
    assert fsdp[0]["digest"] == fsdp[1]["digest"]  # the gathered parameters agree on both ranks
    a, b = load_params(tmp_path, name="ddp"), load_params(tmp_path, name="fsdp")
    assert a.keys() == b.keys()
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert fsdp[0]["history"][-1]["loss"] < fsdp[0]["history"][0]["loss"]
    for got, want in zip(fsdp[0]["history"], ddp[0]["history"], strict=True):
        assert got["val_accuracy"] == pytest.approx(want["val_accuracy"], abs=1e-9)


def test_ranks_that_build_the_model_on_meta_train_the_same_bits(tmp_path: Path) -> None:
    # Rank 1 builds only shapes and gets its shards of rank 0's parameters; nothing may differ.
    runs = [{"name": "whole"}, {"name": "meta", "meta_init": True},
            {"name": "meta-fp16", "meta_init": True, "compression": "fp16"}]
    run_ranks({**COMMON, "strategy": "fsdp", "runs": runs}, tmp_path, np=2)
    whole, meta = results(tmp_path, 2, "whole"), results(tmp_path, 2, "meta")
    assert {r["digest"] for r in meta} == {whole[0]["digest"]}
    assert meta[0]["history"] == whole[0]["history"]
    assert {r["digest"] for r in results(tmp_path, 2, "meta-fp16")} != {whole[0]["digest"]}  # it trained anew


def test_a_meta_model_is_refused_where_it_cannot_be_filled(tmp_path: Path) -> None:
    # ddp broadcasts from real modules: a model of shapes only on rank 1 is a user error, on both ranks
    # (neither waits for the other in a collective).
    proc = run_command([*mpirun_argv(2), PYTHON, str(WORKER), json.dumps({**COMMON, "strategy": "ddp",
                                                                           "meta_init": True}), str(tmp_path)],
                       check=False, timeout=120, env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    assert proc.stderr.count("rank 1: a model on the meta device trains only with strategy fsdp") == 2, proc.stderr


def test_step_checkpoints_resume_from_the_newest_step_every_rank_has(tmp_path: Path) -> None:
    """Checkpoints every 5 steps (inside epochs); rank 1 'died' before its step-10 shard reached the
    disk and everything later is gone: both ranks resume from step 5 and end bitwise where an
    uninterrupted run ends."""
    config = {**COMMON, "strategy": "fsdp", "accumulation_steps": 2, "batch_size": 8}  # 8 steps an epoch
    straight = run_ranks(config, tmp_path / "straight", np=2)
    checkpoints = tmp_path / "checkpoints"
    stepped = {**config, "checkpoint_dir": str(checkpoints), "checkpoint_unit": "steps", "checkpoint_interval": 5,
               "keep_last": 100}
    first = run_ranks(stepped, tmp_path / "first", np=2)
    assert {r["digest"] for r in first} == {straight[0]["digest"]}  # checkpointing changed nothing
    stores = [HDF5CheckpointStore(checkpoints, keep_last=None, rank=r, sharded=True) for r in (0, 1)]
    assert stores[0].steps() == stores[1].steps() == [5, 10, 15, 20, 24]
    for store in stores:
        for step in (15, 20, 24):
            store.path_for(step).unlink()
    stores[1].path_for(10).unlink()
    resumed = run_ranks(stepped, tmp_path / "resumed", np=2)
    assert [r["resumed_from"] for r in resumed] == [5, 5]
    assert {r["digest"] for r in resumed} == {straight[0]["digest"]}
    assert resumed[0]["history"] == straight[0]["history"]

    # Rank 1 has no shard at all (its very first save was lost), rank 0 has all of its own: nothing is
    # common, the shards were written by this world size, so the run starts afresh rather than refusing.
    for step in stores[1].steps():
        stores[1].path_for(step).unlink()
    afresh = run_ranks(stepped, tmp_path / "afresh", np=2)
    assert [r["resumed_from"] for r in afresh] == [None, None]
    assert {r["digest"] for r in afresh} == {straight[0]["digest"]}


def test_async_shards_every_step_then_a_stop_resume_bitwise(tmp_path: Path) -> None:
    """checkpoint every step, written in the background by each rank (async_checkpoints); rank 0's
    should_stop() fires at step 11: both ranks wait for their writes, save, and a fresh launch resumes
    there to the bits of an uninterrupted run."""
    config = {**COMMON, "strategy": "fsdp"}  # 8 steps an epoch, 24 in all
    straight = run_ranks(config, tmp_path / "straight", np=2)
    stepped = {**config, "checkpoint_dir": str(tmp_path / "checkpoints"), "checkpoint_unit": "steps",
               "checkpoint_interval": 1, "keep_last": 3, "async_checkpoints": True}
    first = run_ranks({**stepped, "stop_after_steps": 11}, tmp_path / "first", np=2)
    assert [r["preempted"] for r in first] == [True, True]
    assert [r["background_checkpoints"] for r in first] == [10, 10]  # steps 1-10; step 11 waited for
    stores = [HDF5CheckpointStore(tmp_path / "checkpoints", keep_last=None, rank=r, sharded=True) for r in (0, 1)]
    assert stores[0].steps() == stores[1].steps() == [9, 10, 11]  # pruned to 3, every shard on disk
    resumed = run_ranks(stepped, tmp_path / "resumed", np=2)
    assert [r["resumed_from"] for r in resumed] == [11, 11]
    assert {r["digest"] for r in resumed} == {straight[0]["digest"]}
    assert resumed[0]["history"] == straight[0]["history"]


def test_a_sharded_checkpoint_refuses_another_world_size(tmp_path: Path) -> None:
    checkpoints = str(tmp_path / "checkpoints")
    run_ranks({**COMMON, "strategy": "fsdp", "epochs": 1, "checkpoint_dir": checkpoints}, tmp_path / "two", np=2)
    one_rank = json.dumps({"strategy": "fsdp", "hidden": [64, 64], "val": True, "epochs": 2,
                           "checkpoint_dir": checkpoints})
    alone = run_command([PYTHON, str(WORKER), one_rank, str(tmp_path / "one")], timeout=120, check=False,
                        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert alone.returncode != 0
    assert "holds one shard of 2 (strategy fsdp), but this run has 1 rank(s)" in alone.stderr, alone.stderr[-3000:]
    assert "relaunch with that many ranks" in alone.stderr
    # A larger world: ranks 2 and up find no shards of theirs, rank 0 finds its shard of a 2-rank run.
    with pytest.raises(AssertionError, match="holds one shard of 2 \\(strategy fsdp\\), but this run has 3"):
        run_ranks({**COMMON, "strategy": "fsdp", "epochs": 2, "checkpoint_dir": checkpoints}, tmp_path / "three",
                  np=3)
    # Nothing was overwritten: the two shards of the last step are still there and load.
    for rank in (0, 1):
        store = HDF5CheckpointStore(checkpoints, keep_last=None, rank=rank, sharded=True)
        assert store.steps() == [8] and store.load() is not None
