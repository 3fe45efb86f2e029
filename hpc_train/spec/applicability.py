"""Fields that cannot apply to this kind of job: each draws one warning naming the field and why.

A valid spec may still hold a value that nothing would use (a batch size for a random forest, a
communication backend for a single rank). Such a value is not an error, because the same spec may be
reused for another kind of job, but it must not vanish without a word: `spec_warnings` lists them,
and the CLI (validate, submit, render, run, launch, sweep) and the Python API report each once.
Only values that differ from the default are reported: a resolved spec.yaml lists every default.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hpc_train.spec.model import TORCH_MODELS, JobSpec


@dataclass(frozen=True)
class SpecWarning:
    """One field whose value nothing will use: its key path, the value and why."""

    key: str
    value: Any
    why: str

    def message(self, file: str) -> str:
        return f"{file}: {self.key}: {self.why}; got {self.value!r}"


class IgnoredSettingWarning(UserWarning):
    """Category of the Python API's warnings about a spec value that cannot apply to its job."""


def _sklearn(spec: JobSpec) -> str | None:
    if spec.model.is_torch:
        return None
    return (f"{spec.model.type} is a scikit-learn model, fitted once in one process: no epochs, batches, "
            "optimizer, ranks or checkpoints")


def _not_mlp(spec: JobSpec) -> str | None:
    if spec.model.type in TORCH_MODELS:
        return None
    if spec.model.is_torch:
        return ("applies to neural_network only; your factory takes its own arguments from "
                "model.hyperparameters")
    return f"applies to neural_network only, not to {spec.model.type}"


def _momentum(spec: JobSpec) -> str | None:
    return _sklearn(spec) or (None if spec.training.optimizer == "sgd" else
                              f"momentum is a setting of the sgd optimizer; {spec.training.optimizer} has none")


def _target(spec: JobSpec) -> str | None:
    paths = [spec.data.train_path, spec.data.val_path or ""]
    if any(path and not path.startswith("sklearn:") for path in paths):
        return None
    return "names a column of a CSV file; the sklearn: datasets bring their own target"


def _val_fraction(spec: JobSpec) -> str | None:
    return None if spec.data.val_path is None else "data.val_path is the validation set: nothing is held out"


# key path -> why its value cannot apply to this spec (None: it applies)
RULES: dict[str, Callable[[JobSpec], str | None]] = {
    "model.hidden_sizes": _not_mlp,
    "model.dropout": _not_mlp,
    "data.target": _target,
    "data.val_fraction": _val_fraction,
    "data.batch_size": _sklearn,
    "training.epochs": _sklearn,
    "training.learning_rate": _sklearn,
    "training.optimizer": _sklearn,
    "training.momentum": _momentum,
    "training.weight_decay": _sklearn,
    "training.accumulation_steps": _sklearn,
    "training.mixed_precision": _sklearn,
    "training.gradient_checkpointing": _sklearn,
    "training.early_stopping": _sklearn,
    "training.tensorboard": _sklearn,
    # one rank in resources may still be launched as several (`hpc-train launch -np N`): no rank rule here
    "distributed.strategy": _sklearn,
    "distributed.backend": _sklearn,
    "distributed.compression": _sklearn,
    "checkpoint.dir": _sklearn,
    "checkpoint.interval": _sklearn,
    "checkpoint.unit": _sklearn,
    "checkpoint.keep_last": _sklearn,
    "checkpoint.auto_resume": _sklearn,
    "checkpoint.async_save": _sklearn,
    "checkpoint.resume_from": _sklearn,
}
SWEEP_IGNORED = "this command trains the spec once; the sweep section is read by `hpc-train sweep` only"
# What sweep trials do not use: each trains one process per cross-validation fold, with its own loop.
SWEEP_UNUSED = ("data.val_fraction", "training.accumulation_steps", "training.mixed_precision",
                "training.gradient_checkpointing", "training.early_stopping", "training.tensorboard",
                "distributed.strategy", "distributed.backend", "distributed.compression", "checkpoint.dir",
                "checkpoint.interval", "checkpoint.unit", "checkpoint.keep_last", "checkpoint.auto_resume",
                "checkpoint.async_save", "checkpoint.resume_from")
UNUSED_BY_TRIALS = ("sweep trials train one process per cross-validation fold without it; it applies when the "
                    "spec (or the best trial) is trained as a job")


def spec_warnings(spec: JobSpec, *, single_job: bool = False, sweep: bool = False,
                  skip: tuple[str, ...] = ()) -> list[SpecWarning]:
    """Every field holding a non-default value that cannot apply to this job, with why (one each).

    single_job: the spec is about to be trained once (submit, run, render), so a sweep section is unused.
    sweep: the spec's sweep section is about to run, whose trials do not use SWEEP_UNUSED.
    skip: sections whose values the caller did not write (the orchestrator's checkpoint settings).
    """
    found = []
    for key, rule in RULES.items():
        if key.split(".")[0] in skip:
            continue
        value, default = _value_and_default(spec, key)
        if value != default:
            why = rule(spec) or (UNUSED_BY_TRIALS if sweep and key in SWEEP_UNUSED else None)
            if why:
                shown = value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
                found.append(SpecWarning(key, shown, why))
    if single_job and spec.sweep is not None:
        found.append(SpecWarning("sweep", spec.sweep.model_dump(mode="json"), SWEEP_IGNORED))
    return found


def warn_ignored(spec: JobSpec, *, file: str, skip: tuple[str, ...] = (), stacklevel: int = 3) -> None:
    """Python API: one IgnoredSettingWarning for each field of a job about to run that cannot apply."""
    for found in spec_warnings(spec, single_job=True, skip=skip):
        warnings.warn(found.message(file), IgnoredSettingWarning, stacklevel=stacklevel)


def warn(message: str, stacklevel: int = 3) -> None:
    """Python API: one IgnoredSettingWarning for an argument that cannot apply."""
    warnings.warn(message, IgnoredSettingWarning, stacklevel=stacklevel)


def _value_and_default(spec: JobSpec, key: str) -> tuple[Any, Any]:
    section_name, field = key.split(".")
    section: BaseModel = getattr(spec, section_name)
    info = type(section).model_fields[field]
    default = info.get_default(call_default_factory=True)
    return getattr(section, field), default
