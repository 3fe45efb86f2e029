"""Reading a job back while it runs and after: resource use, metrics, progress and sweep plots."""

from hpc_train.monitor.training_monitor import METRIC_KEYS, TrainingMonitor
from hpc_train.monitor.usage import format_bytes, usage_of

__all__ = ["METRIC_KEYS", "TrainingMonitor", "format_bytes", "usage_of"]
