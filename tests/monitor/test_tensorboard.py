"""The optional TensorBoard helper: event files when tensorboard is installed, a clear error when not."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc_train.errors import UserError
from hpc_train.monitor import tensorboard
from hpc_train.monitor.tensorboard import TensorBoardWriter, tensorboard_available, tensorboard_wanted
from hpc_train.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


def test_spec_switch() -> None:
    spec = load_spec(REPO / "configs" / "quickstart.yaml")
    assert tensorboard_wanted(spec) is False
    assert tensorboard_wanted(load_spec(REPO / "configs" / "quickstart.yaml", ["training.tensorboard=true"]))


def test_missing_tensorboard_is_a_user_error_with_a_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tensorboard, "tensorboard_available", lambda: False)
    with pytest.raises(UserError, match="HINT: pip install tensorboard"):
        TensorBoardWriter(tmp_path)


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard is not installed (optional; pip install "
                                                         "tensorboard to run this test)")
def test_epochs_become_event_files(tmp_path: Path) -> None:
    with TensorBoardWriter(tmp_path) as writer:
        for epoch in (1, 2):
            writer.log_epoch({"epoch": epoch, "step": 10 * epoch, "loss": 1.0 / epoch, "val_loss": 1.2 / epoch,
                              "accuracy": 0.5 + 0.1 * epoch, "lr": None, "time": 123.0})
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
