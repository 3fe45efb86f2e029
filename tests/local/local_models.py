"""Model factory for the local executor tests (imported inside the job through PYTHONPATH).

`chatty_sleepy_mlp` is tests/slurm/preemption_models.py's sleepy MLP (the built-in MLP bit for bit, with
a pause in each training step) that also prints one line to stdout when it is built, so a test can see
the worker's output reach the log file while the job still runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "slurm"))
from preemption_models import SleepyMLP, sleepy_mlp

BUILT_LINE = "local-executor-test: model built"


def chatty_sleepy_mlp(n_features: int, n_classes: int, hidden_sizes: Sequence[int] = (128, 64),
                      dropout: float = 0.0, step_delay: float = 0.02) -> SleepyMLP:
    """What `model.type: local_models:chatty_sleepy_mlp` builds."""
    print(BUILT_LINE)  # stdout, no flush: the job must not buffer it until the end
    return sleepy_mlp(n_features, n_classes, hidden_sizes, dropout, step_delay)
