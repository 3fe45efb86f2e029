"""The CUDA paths (float16 autocast with GradScaler, device placement): only where a GPU exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.models.mlp import MLP
from hpc_train.runtime import DistributedTrainer
from hpc_train.runtime.environments import SingleProcessEnvironment

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 32, generator=gen)
    y = (x @ torch.randn(32, 4, generator=gen)).argmax(1)
    return DataLoader(TensorDataset(x, y), batch_size=64)


def test_cuda_mixed_precision_with_grad_scaler_and_checkpointing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MLP(32, [64, 64], 4, dropout=0.1)
    trainer = DistributedTrainer(backend="nccl", num_gpus=1, mixed_precision=True, gradient_checkpointing=True,
                                 learning_rate=1e-2, checkpoint_store=HDF5CheckpointStore(tmp_path),
                                 environment=SingleProcessEnvironment({}))
    history = trainer.train(model, loader(), epochs=4)
    assert trainer.device.type == "cuda"
    assert next(model.parameters()).is_cuda
    assert history[-1]["loss"] < history[0]["loss"]
    state = trainer.state_dict()
    assert state["scaler"]["scale"] > 0  # the float16 GradScaler ran
    assert "cuda" in state["ranks"]["0"]["rng"]


def test_cuda_resume_after_preemption_matches_a_straight_run(tmp_path: Path) -> None:
    def run(directory: Path, stop_at: int | None) -> tuple[str, bool]:
        torch.manual_seed(0)
        model = MLP(32, [64, 64], 4, dropout=0.1)
        calls: list[int] = []

        def should_stop() -> bool:
            calls.append(1)
            return len(calls) == stop_at

        trainer = DistributedTrainer(num_gpus=1, mixed_precision=True, environment=SingleProcessEnvironment({}),
                                     checkpoint_store=HDF5CheckpointStore(directory), should_stop=should_stop)
        trainer.train(model, loader(), epochs=3)
        return trainer.param_digest(), trainer.preempted

    straight, _ = run(tmp_path / "a", None)
    _, preempted = run(tmp_path / "b", 11)
    assert preempted
    resumed, preempted = run(tmp_path / "b", None)
    assert not preempted
    assert resumed == straight
