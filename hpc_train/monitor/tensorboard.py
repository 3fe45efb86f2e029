"""Optional TensorBoard event files (`training.tensorboard: true`), written next to metrics.jsonl.

tensorboard is not a dependency: it is imported only when a spec asks for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hpc_train.errors import UserError

if TYPE_CHECKING:
    from typing_extensions import Self

# metrics.jsonl key -> TensorBoard tag; train and validation curves share a chart
TAGS = {"loss": "loss/train", "val_loss": "loss/val", "accuracy": "accuracy/train",
        "val_accuracy": "accuracy/val", "lr": "lr", "samples_per_s": "throughput/samples_per_s"}
NOT_SCALARS = ("epoch", "step", "time")


def tensorboard_available() -> bool:
    """True when the tensorboard package can be imported."""
    return importlib.util.find_spec("tensorboard") is not None


def tensorboard_wanted(spec: Any) -> bool:
    """True when the spec asks for TensorBoard (`training.tensorboard: true`)."""
    return bool(getattr(getattr(spec, "training", None), "tensorboard", False))


class TensorBoardWriter:
    """Scalars of each epoch to `<run_dir>/tensorboard/` (rank 0 only: the caller decides)."""

    def __init__(self, run_dir: str | Path) -> None:
        if not tensorboard_available():
            raise UserError("training.tensorboard is true but the tensorboard package is not installed; "
                            "HINT: pip install tensorboard, or set training.tensorboard: false")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Write the numeric values of one metrics.jsonl record at its epoch."""
        step = int(record.get("epoch") or record.get("step") or 0)
        for key, value in record.items():
            if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self._writer.add_scalar(TAGS.get(key, key), float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
