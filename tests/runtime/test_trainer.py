"""DistributedTrainer in one process: the plain loop, its options, and its mistakes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from ranks import load_params, results, run_ranks
from support import PYTHON, REPO
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.commands import run_command
from hpc_train.errors import UserError
from hpc_train.models.mlp import MLP
from hpc_train.runtime import DistributedTrainer, final_param_digest
from hpc_train.runtime.activation_checkpointing import enable_gradient_checkpointing
from hpc_train.runtime.comm import DDPBackend, FSDPBackend, import_horovod
from hpc_train.runtime.comm.ddp import resolve_process_group_backend
from hpc_train.runtime.environments import SingleProcessEnvironment, TorchrunEnvironment

HISTORY_KEYS = {"epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "samples_per_s", "duration"}


def data(n: int = 256, features: int = 12, classes: int = 3, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = (x @ torch.randn(features, classes, generator=gen)).argmax(1)
    return TensorDataset(x, y)


def trainer(**kwargs: Any) -> DistributedTrainer:
    return DistributedTrainer(environment=SingleProcessEnvironment({}), **kwargs)


def model(dropout: float = 0.0, seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(12, [32, 32], 3, dropout=dropout)


def test_single_process_history_and_learning() -> None:
    t = trainer(learning_rate=1e-2)
    history = t.train(model(), DataLoader(data(), batch_size=32), epochs=5,
                      val_loader=DataLoader(data(64, seed=1), batch_size=32))
    assert t.world_size == 1 and t.rank == 0 and not t.preempted
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert all(set(r) == HISTORY_KEYS for r in history)
    assert history[-1]["step"] == 5 * 8
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["accuracy"] > history[0]["accuracy"]
    assert history[-1]["val_loss"] is not None and 0 <= history[-1]["val_accuracy"] <= 1


def test_same_seed_same_digest_and_digest_is_stable() -> None:
    digests = []
    for _ in range(2):
        m = model(dropout=0.2)
        trainer(seed=3).train(m, DataLoader(data(), batch_size=32), epochs=2)
        digests.append(final_param_digest(m))
    assert digests[0] == digests[1]
    assert len(digests[0]) == 64


def test_mixed_precision_trains() -> None:
    t = trainer(mixed_precision=True, learning_rate=1e-2)
    history = t.train(model(), DataLoader(data(), batch_size=32), epochs=4)
    assert history[-1]["loss"] < history[0]["loss"] * 0.8


def test_gradient_checkpointing_same_gradients_fewer_saved_bytes() -> None:
    torch.manual_seed(0)
    net = MLP(64, [256, 256, 256, 256], 10, dropout=0.1)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))

    def grads_and_saved_bytes() -> tuple[list[torch.Tensor], int]:
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        net.zero_grad()
        torch.manual_seed(1)  # same dropout masks in both runs
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return [p.grad.clone() for p in net.parameters() if p.grad is not None], saved

    plain, plain_bytes = grads_and_saved_bytes()
    undo = enable_gradient_checkpointing(net)
    checkpointed, checkpointed_bytes = grads_and_saved_bytes()
    undo()
    assert len(plain) == len(checkpointed) == len(list(net.parameters()))
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert checkpointed_bytes < plain_bytes / 4
    assert set(net.state_dict()) == {k for k, _ in net.named_parameters()}  # names unchanged


def test_gradient_checkpointing_in_the_trainer_changes_nothing_but_memory() -> None:
    digests = []
    for checkpointing in (False, True):
        m = model(dropout=0.2)
        trainer(gradient_checkpointing=checkpointing).train(m, DataLoader(data(), batch_size=32), epochs=2)
        digests.append(final_param_digest(m))
        assert "forward" not in vars(m.blocks[0])  # undone after training
    assert digests[0] == digests[1]


def test_gradient_checkpointing_needs_blocks() -> None:
    with pytest.raises(UserError, match="blocks"):
        trainer(gradient_checkpointing=True).train(nn.Linear(12, 3), DataLoader(data(), batch_size=32), 1)


def test_accumulation_matches_a_bigger_batch() -> None:
    small, big = model(), model()
    trainer(accumulation_steps=4, optimizer="sgd", learning_rate=0.1).train(
        small, DataLoader(data(), batch_size=8), epochs=2)
    trainer(optimizer="sgd", learning_rate=0.1).train(big, DataLoader(data(), batch_size=32), epochs=2)
    for a, b in zip(small.parameters(), big.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_early_stopping_stops_when_the_metric_stalls() -> None:
    t = trainer(learning_rate=1e-12, early_stopping={"patience": 2, "metric": "val_accuracy"})
    history = t.train(model(), DataLoader(data(), batch_size=32), epochs=20,
                      val_loader=DataLoader(data(64, seed=1), batch_size=64))
    assert len(history) == 3


def test_early_stopping_on_a_val_metric_needs_a_val_loader() -> None:
    with pytest.raises(UserError, match="val_loader"):
        trainer(early_stopping={"patience": 2}).train(model(), DataLoader(data(), batch_size=32), 2)


def test_should_stop_returns_early_and_saves(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path)
    calls: list[int] = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) == 3

    t = trainer(checkpoint_store=store, should_stop=should_stop)
    history = t.train(model(), DataLoader(data(), batch_size=32), epochs=3)
    assert t.preempted and history == []
    checkpoint = store.load()
    assert checkpoint is not None and checkpoint.step == 3 and checkpoint.meta["reason"] == "preempted"
    assert checkpoint.state["progress"] == {"epoch": 0, "batch": 3, "step": 3, "stopped_early": False}


def test_state_dict_holds_the_whole_training_state() -> None:
    t = trainer(early_stopping={"patience": 3, "metric": "loss"})
    t.train(model(dropout=0.1), DataLoader(data(), batch_size=32), epochs=1)
    state = t.state_dict()
    assert {"model", "optimizer", "scaler", "progress", "early_stopping", "history", "ranks", "world"} <= set(state)
    assert set(state["ranks"]) == {"0"} and {"torch", "numpy", "python"} == set(state["ranks"]["0"]["rng"])
    assert state["world"]["num_threads"] == torch.get_num_threads()
    assert state["world"]["world_size"] == 1
    assert not any(k.startswith("module.") for k in state["model"])


def test_resume_in_a_fresh_process_is_bitwise_exact(tmp_path: Path) -> None:
    config = {"dropout": 0.2, "optimizer": "adam", "lr": 0.01, "epochs": 3, "accumulation_steps": 2,
              "batch_size": 16, "val": True, "checkpoint_interval": 1}
    first = [{"name": "straight", "checkpoint_dir": str(tmp_path / "a")},
             {"name": "stopped", "checkpoint_dir": str(tmp_path / "b"), "stop_after_steps": 13}]
    run_ranks({**config, "runs": first}, tmp_path / "first")
    straight, stopped = results(tmp_path / "first", 1, "straight")[0], results(tmp_path / "first", 1, "stopped")[0]
    assert stopped["preempted"] and len(stopped["history"]) == 1  # 8 steps an epoch: stopped in epoch 2
    # A fresh process resumes; then a second trainer finds the finished run and does nothing more.
    second = [{"name": "resumed", "checkpoint_dir": str(tmp_path / "b")},
              {"name": "again", "checkpoint_dir": str(tmp_path / "b")}]
    run_ranks({**config, "runs": second}, tmp_path / "second")
    resumed, again = results(tmp_path / "second", 1, "resumed")[0], results(tmp_path / "second", 1, "again")[0]
    assert not resumed["preempted"]
    assert resumed["digest"] == straight["digest"]
    assert resumed["history"] == straight["history"]
    assert again["digest"] == straight["digest"] and again["history"] == straight["history"]
    for name, value in load_params(tmp_path / "first", name="straight").items():
        assert torch.equal(value, load_params(tmp_path / "second", name="resumed")[name])


def test_thread_count_mismatch_warns(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path)
    trainer(checkpoint_store=store).train(model(), DataLoader(data(), batch_size=32), epochs=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with pytest.warns(RuntimeWarning, match="num_threads"):
            trainer(checkpoint_store=store).train(model(), DataLoader(data(), batch_size=32), epochs=2)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"backend": "tcp"}, "backend 'tcp' is not one of: gloo, nccl, mpi"),
    ({"strategy": "pipeline"}, "strategy 'pipeline' is not one of"),
    ({"compression": "int8"}, "compression"),
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"accumulation_steps": 0}, "accumulation_steps"),
    ({"early_stopping": {"patience": 2, "metric": "f1"}}, "early_stopping.metric"),
    ({"early_stopping": {"patiense": 2}}, "unknown key 'patiense'"),
    ({"master": "worker1"}, "host:port"),
    ({"nodes": [{"gpus": [0]}]}, "nodes\\[0\\]"),
])
def test_bad_settings_are_user_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UserError, match=match):
        trainer(**kwargs)


def test_mpi_backend_without_mpi_torch_sends_gradients_over_mpi4py() -> None:
    if torch.distributed.is_mpi_available():
        pytest.skip("this torch has MPI support: backend mpi is its own process group")
    # The process group (broadcast, metrics) is gloo; DDP's buckets go to MPIGradients.
    assert resolve_process_group_backend("mpi", torch.device("cpu")) == "gloo"
    env = TorchrunEnvironment({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                               "MASTER_PORT": "1"})
    assert DDPBackend(env, backend="mpi", device=torch.device("cpu")).gradients_over_mpi
    assert not DDPBackend(env, backend="gloo", device=torch.device("cpu")).gradients_over_mpi
    with pytest.raises(UserError, match="HINT: use backend 'nccl' on GPUs"):
        resolve_process_group_backend("mpi", torch.device("cuda"))
    with pytest.raises(UserError, match="strategy 'fsdp'.*\n.*HINT: use backend 'gloo'"):
        FSDPBackend(env, backend="mpi", device=torch.device("cpu")).setup()  # refused before any rendezvous


@pytest.mark.mpi
def test_mpi_gradients_refuse_ranks_that_mpi_did_not_start() -> None:
    # As under torchrun: the environment says rank 1 of 2, but MPI_Init finds a singleton.
    code = "from hpc_train.runtime.comm.ddp import MPIGradients; MPIGradients(1, 2)"
    result = run_command([PYTHON, "-c", code], check=False, timeout=60, env={"PYTHONPATH": str(REPO)})
    assert result.returncode != 0
    assert "MPI sees rank 0 of 1, the environment rank 1 of 2" in result.stderr
    assert "HINT: launch with `hpc-train launch -np N` or srun" in result.stderr


def test_missing_horovod_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "horovod.torch", None)
    with pytest.raises(UserError, match="scripts/install_horovod.sh"):
        import_horovod()


def test_train_loader_must_be_a_map_style_dataloader() -> None:
    class Stream(torch.utils.data.IterableDataset[Any]):
        def __iter__(self) -> Any:
            return iter([])

    with pytest.raises(UserError, match="iterable dataset"):
        trainer().train(model(), DataLoader(Stream(), batch_size=4), 1)


def _digest_after(epochs: int = 2, **kwargs: Any) -> str:
    t = trainer(learning_rate=0.05, **kwargs)
    t.train(model(), DataLoader(data(), batch_size=32), epochs=epochs)
    return t.param_digest()


def test_momentum_and_weight_decay_reach_the_optimizer() -> None:
    plain = _digest_after(optimizer="sgd")
    assert _digest_after(optimizer="sgd", momentum=0.9) == plain  # 0.9 is sgd's default
    assert _digest_after(optimizer="sgd", momentum=0.5) != plain
    assert _digest_after(optimizer="sgd", weight_decay=0.1) != plain
    assert _digest_after(optimizer="adam", weight_decay=0.1) != _digest_after(optimizer="adam")


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"optimizer": "adam", "momentum": 0.5}, "momentum is a setting of the 'sgd' optimizer"),
    ({"optimizer": lambda params, lr: torch.optim.SGD(params, lr=lr), "weight_decay": 0.1}, "builds its own"),
    ({"optimizer": lambda params, lr: torch.optim.SGD(params, lr=lr), "momentum": 0.5}, "builds its own"),
    ({"optimizer": "sgd", "momentum": 1.0}, "momentum must be in [0, 1)"),
    ({"weight_decay": -0.1}, "weight_decay must be non-negative"),
])
def test_optimizer_settings_nothing_would_use_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UserError) as error:
        trainer(**kwargs)
    assert fragment in str(error.value)


def test_resume_false_writes_checkpoints_but_starts_afresh(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path / "ckpt", keep_last=2)
    first = trainer(learning_rate=0.05, checkpoint_store=store)
    first.train(model(), DataLoader(data(), batch_size=32), epochs=2, checkpoint_interval=1)
    steps = store.steps()
    assert steps and first.resumed_from is None
    again = trainer(learning_rate=0.05, checkpoint_store=store, resume=False)
    history = again.train(model(), DataLoader(data(), batch_size=32), epochs=2, checkpoint_interval=1)
    assert again.resumed_from is None and [r["epoch"] for r in history] == [1, 2]
    assert again.param_digest() == first.param_digest()  # trained the same two epochs again, from scratch
    resumed = trainer(learning_rate=0.05, checkpoint_store=store)
    assert resumed.train(model(), DataLoader(data(), batch_size=32), epochs=2) is not None
    assert resumed.resumed_from == steps[-1]


# -- resume_from: another run's weights start this one


def _files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_from_starts_with_the_other_runs_weights_and_optimizer(tmp_path: Path, optimizer: str) -> None:
    settings: dict[str, Any] = {"learning_rate": 0.05, "optimizer": optimizer,
                                **({"momentum": 0.0} if optimizer == "sgd" else {})}
    source = HDF5CheckpointStore(tmp_path / "source")
    first = trainer(checkpoint_store=source, **settings)
    first_model = model()
    first.train(first_model, DataLoader(data(), batch_size=32), epochs=2, checkpoint_interval=1)
    before = _files(tmp_path / "source")

    warm = trainer(checkpoint_store=HDF5CheckpointStore(tmp_path / "warm"), resume_from=tmp_path / "source",
                   seed=7, **settings)
    history = warm.train(model(), DataLoader(data(), batch_size=32), epochs=1, checkpoint_interval=1)
    assert warm.warm_started_from == str(source.latest()) and warm.resumed_from is None
    assert [r["epoch"] for r in history] == [1]  # a new run: its epochs count from 1
    assert _files(tmp_path / "source") == before  # the other run's folder is only read

    # The same new run by hand: the first run's final weights, a fresh optimizer, the same seed.
    by_hand = model()
    by_hand.load_state_dict(first_model.state_dict())
    reference = trainer(seed=7, **settings)
    reference.train(by_hand, DataLoader(data(), batch_size=32), epochs=1)
    if optimizer == "sgd":  # no optimizer state: only the weights carry over, so the runs are equal
        assert warm.param_digest() == reference.param_digest()
    else:  # Adam's moments carried over too: the same start, a different step
        assert warm.param_digest() != reference.param_digest()

    # Restarted, the new run resumes from its own checkpoint, not from the other run's again.
    again = trainer(checkpoint_store=HDF5CheckpointStore(tmp_path / "warm"), resume_from=tmp_path / "source",
                    seed=7, **settings)
    again.train(model(), DataLoader(data(), batch_size=32), epochs=1)
    assert again.resumed_from is not None and again.warm_started_from is None
    assert again.param_digest() == warm.param_digest()


def test_resume_from_a_missing_or_empty_place_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for place, fragment in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "empty", "no loadable checkpoint")):
        t = trainer(resume_from=place)
        with pytest.raises(UserError, match=fragment):
            t.train(model(), DataLoader(data(), batch_size=32), epochs=1)
