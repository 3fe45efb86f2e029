"""Two ranks under `mpirun -np 2`: DDP (gloo; or gradients over MPI), Horovod (MPI) and FSDP (gloo) give the right numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from ranks import load_params, require_horovod, results, run_ranks

pytestmark = pytest.mark.mpi

STRATEGIES = [
    pytest.param("ddp", id="ddp"),
    pytest.param("ddp-mpi", id="ddp-mpi"),  # backend mpi: DDP's buckets by MPI_Allreduce (mpi4py)
    pytest.param("horovod", id="horovod", marks=pytest.mark.horovod),
    pytest.param("fsdp", id="fsdp"),
]


def setup_strategy(strategy: str) -> dict[str, Any]:
    """The worker's settings for a STRATEGIES entry."""
    if strategy == "horovod":
        require_horovod()
    if strategy == "ddp-mpi":
        return {"strategy": "ddp", "backend": "mpi"}
    return {"strategy": strategy}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ranks_end_with_identical_parameters(strategy: str, tmp_path: Path) -> None:
    setting = setup_strategy(strategy)
    results = run_ranks({**setting, "dropout": 0.3, "optimizer": "adam", "lr": 0.01, "epochs": 2},
                        tmp_path, np=2)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["world_size"] == 2 and r["environment"] == "openmpi" for r in results)
    assert results[0]["digest"] == results[1]["digest"]
    assert results[0]["history"] == results[1]["history"]  # metrics agreed by allreduce


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_ranks_with_accumulation_equal_one_rank_with_the_whole_batch(strategy: str, tmp_path: Path) -> None:
    setting = setup_strategy(strategy)
    # 2 ranks x micro-batch 4 x 2 micro-steps = one step over 16 samples, the same 16 a single
    # rank gets with batch 16: DistributedSampler deals rank r the items r, r+2, ... of one permutation.
    common = {"n_samples": 64, "optimizer": "sgd", "lr": 0.05, "epochs": 2}
    run_ranks({**common, **setting, "batch_size": 4, "accumulation_steps": 2}, tmp_path / "two", np=2)
    run_ranks({**common, "batch_size": 16}, tmp_path / "one")
    two, one = load_params(tmp_path / "two"), load_params(tmp_path / "one")
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fp16_compression_halves_the_bytes_and_keeps_the_result(strategy: str, tmp_path: Path) -> None:
    setting = setup_strategy(strategy)
    runs = [{"name": "none", "compression": "none"}, {"name": "fp16", "compression": "fp16"}]
    run_ranks({**setting, "optimizer": "sgd", "lr": 0.05, "epochs": 2, "record_allreduce": True,
               "runs": runs}, tmp_path, np=2)
    plain, fp16 = results(tmp_path, 2, "none")[0], results(tmp_path, 2, "fp16")[0]
    steps, n_params = fp16["history"][-1]["step"], fp16["n_params"]
    gradient_calls = [c for c in fp16["allreduce"] if c["dtype"] == "torch.float16"]
    if strategy == "fsdp":  # each parameter's rows are padded to a multiple of the world size: < 1 row each
        assert steps * n_params <= sum(c["numel"] for c in gradient_calls) < steps * n_params * 1.1
    else:
        assert sum(c["numel"] for c in gradient_calls) == steps * n_params
    assert sum(c["bytes"] for c in gradient_calls) == sum(c["numel"] for c in gradient_calls) * 2  # float32: 4
    assert gradient_calls and not [c for c in fp16["allreduce"] if c["dtype"] == "torch.float32"]
    if strategy in ("horovod", "ddp-mpi"):  # their float32 path is recorded too, so the halving is measured
        float32_bytes = sum(c["bytes"] for c in plain["allreduce"] if c["dtype"] == "torch.float32")
        assert float32_bytes == 2 * sum(c["bytes"] for c in gradient_calls)
    a, b = load_params(tmp_path, name="none"), load_params(tmp_path, name="fp16")
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-2, atol=2e-3, msg=name)
    assert not torch.equal(torch.cat([v.flatten() for v in a.values()]),
                           torch.cat([v.flatten() for v in b.values()]))  # compression did happen


def test_digits_mlp_on_two_ranks_is_accurate(tmp_path: Path) -> None:
    results = run_ranks({"dataset": "digits", "hidden": [64], "optimizer": "adam", "lr": 0.01, "epochs": 8,
                         "batch_size": 32, "val": True}, tmp_path, np=2)
    final = results[0]["history"][-1]
    assert final["val_accuracy"] > 0.9, results[0]["history"]
    assert results[0]["digest"] == results[1]["digest"]


@pytest.mark.parametrize("strategy", ["ddp", "ddp-mpi", "fsdp"])
def test_mixed_precision_and_checkpointing_on_two_ranks(strategy: str, tmp_path: Path) -> None:
    results = run_ranks({**setup_strategy(strategy), "optimizer": "adam", "lr": 0.01, "epochs": 3, "mixed_precision": True,
                         "gradient_checkpointing": True, "dropout": 0.1}, tmp_path, np=2)
    history = results[0]["history"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert results[0]["digest"] == results[1]["digest"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_after_preemption_is_bitwise_exact(strategy: str, tmp_path: Path) -> None:
    setting = setup_strategy(strategy)
    config = {**setting, "dropout": 0.2, "optimizer": "adam", "lr": 0.01, "epochs": 3, "accumulation_steps": 2,
              "batch_size": 8, "val": True, "checkpoint_interval": 1, "compression": "fp16"}
    # Only rank 0's should_stop() fires; rank 1 must follow it through the agreed flag.
    runs = [{"name": "straight", "checkpoint_dir": str(tmp_path / "a")},
            {"name": "stopped", "checkpoint_dir": str(tmp_path / "b"), "stop_after_steps": 11}]
    run_ranks({**config, "runs": runs}, tmp_path / "first", np=2)
    straight, stopped = results(tmp_path / "first", 2, "straight"), results(tmp_path / "first", 2, "stopped")
    assert all(r["preempted"] for r in stopped) and len(stopped[0]["history"]) == 1
    resumed = run_ranks({**config, "checkpoint_dir": str(tmp_path / "b")}, tmp_path / "resumed", np=2)
    assert {r["digest"] for r in resumed} == {straight[0]["digest"]}
    assert resumed[0]["history"] == straight[0]["history"]


def test_ddp_gradients_over_mpi_equal_ddp_over_gloo_bitwise(tmp_path: Path) -> None:
    # Two ranks: 1/2 folded into the loss scales every gradient exactly, and a sum of two is the same
    # either way round, so the MPI hooks must give gloo's average bit for bit (float16 on the wire too).
    config = {"strategy": "ddp", "dropout": 0.2, "optimizer": "adam", "lr": 0.01, "epochs": 2, "accumulation_steps": 2,
              "batch_size": 8}
    runs = [{"name": f"{backend}-{compression}", "backend": backend, "compression": compression,
             "mixed_precision": compression == "fp16"}
            for compression in ("none", "fp16") for backend in ("gloo", "mpi")]
    run_ranks({**config, "runs": runs}, tmp_path, np=2)
    digests = {run["name"]: {r["digest"] for r in results(tmp_path, 2, run["name"])} for run in runs}
    assert all(len(d) == 1 for d in digests.values()), digests  # the ranks agree
    assert digests["mpi-none"] == digests["gloo-none"]
    assert digests["mpi-fp16"] == digests["gloo-fp16"]
    assert digests["gloo-none"] != digests["gloo-fp16"]  # the settings did change the training
