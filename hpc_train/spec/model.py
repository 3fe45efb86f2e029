"""The typed job spec: one pydantic model per YAML section. Unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_serializer, field_validator

from hpc_train.spec.units import format_slurm_time, parse_memory_mb, parse_time_seconds

SKLEARN_MODELS = ("random_forest", "svm", "gradient_boosting", "logistic_regression")
TORCH_MODELS = ("neural_network",)
BUILTIN_MODELS = SKLEARN_MODELS + TORCH_MODELS
SKLEARN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
STRATEGIES = ("none", "ddp", "data_parallel", "horovod", "model_parallel", "fsdp")
METRICS = ("accuracy", "f1_score", "precision", "recall", "loss")

# Name-like patterns are used with fullmatch only: `$` also matches before a final newline, so
# `re.match("...$", "NAME\n")` would let a YAML block scalar ("NAME\n") through.
# Names that end up in #SBATCH lines and file names: keep them to what SLURM itself accepts.
SLURM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# SLURM feature expressions: names joined by & | , * with [ ] ( ) groups; nothing a shell or sbatch line reads.
CONSTRAINT = re.compile(r"[A-Za-z0-9_.+\-=:&|,*!\[\]()]{1,512}")
# Control characters (newline, NUL, ...) would end a #SBATCH or Apptainer line, or cannot be passed to a process.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

MemoryMB = Annotated[int, BeforeValidator(parse_memory_mb)]
Seconds = Annotated[int, BeforeValidator(parse_time_seconds)]


class Section(BaseModel):
    """Base of every spec section: unknown keys and silent type coercion are refused."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True, frozen=False,
                              ser_json_inf_nan="constants")  # a dumped spec keeps .inf and .nan


def _single_line(value: Any) -> Any:
    """Refuse control characters in a string (or in the strings of a list or dict's values)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str) and CONTROL.search(item):
            raise ValueError(f"{item!r} contains a control character (newline, NUL, ...); "
                             "write it on one line")
    return value


def _slurm_name(value: str | None, what: str) -> str | None:
    if value is not None and not SLURM_NAME.fullmatch(value):
        raise ValueError(f"{what} may contain letters, digits and _ . + - (up to 128), starting with a letter or digit")
    return value


class ModelSpec(Section):
    type: str = Field(description="random_forest | svm | gradient_boosting | logistic_regression | "
                                  "neural_network | package.module:factory")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    hidden_sizes: list[Annotated[int, Field(gt=0)]] = Field(default_factory=lambda: [128, 64])
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value in BUILTIN_MODELS or IMPORT_PATH.fullmatch(value):
            return value
        raise ValueError("unknown model type; use one of " + ", ".join(BUILTIN_MODELS)
                         + " or an import path package.module:factory")

    @property
    def is_torch(self) -> bool:
        """True for models trained by the torch trainer (built-in MLP or a user factory)."""
        return self.type in TORCH_MODELS or ":" in self.type


class DataSpec(Section):
    train_path: str = Field("sklearn:digits", min_length=1)
    val_path: str | None = None
    target: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    batch_size: int = Field(32, gt=0)
    standardize: bool = True
    features: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="the CSV columns to train on; default: every column but the target")
    drop: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="CSV columns to leave out (ids, dates, notes)")

    @field_validator("train_path", "val_path")
    @classmethod
    def _known_dataset(cls, value: str | None) -> str | None:
        _single_line(value)
        if value and value.startswith("sklearn:") and value.split(":", 1)[1] not in SKLEARN_DATASETS:
            raise ValueError("unknown scikit-learn dataset; use sklearn:" + ", sklearn:".join(SKLEARN_DATASETS)
                             + " or a CSV path")
        return value

    @field_validator("features", "drop")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        seen: set[str] = set()
        for name in value or []:
            if name in seen:
                raise ValueError(f"column {name!r} is listed twice")
            seen.add(name)
        return _single_line(value)


class EarlyStoppingSpec(Section):
    patience: int = Field(5, ge=1)
    metric: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = "val_loss"
    mode: Literal["min", "max"] | None = None
    min_delta: float = Field(0.0, ge=0.0)


class TrainingSpec(Section):
    epochs: int = Field(10, ge=1)
    seed: int = Field(0, ge=0)
    learning_rate: float = Field(1e-3, gt=0.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    accumulation_steps: int = Field(1, ge=1)
    mixed_precision: bool = False
    gradient_checkpointing: bool = False
    early_stopping: EarlyStoppingSpec | None = None
    threads: int | None = Field(None, ge=1, description="torch threads per rank; default cpus_per_task")
    tensorboard: bool = False


class DistributedSpec(Section):
    strategy: Literal["none", "ddp", "data_parallel", "horovod", "model_parallel", "fsdp"] = "ddp"
    backend: Literal["auto", "gloo", "nccl", "mpi"] = "auto"
    compression: Literal["none", "fp16"] = "none"


class ResourcesSpec(Section):
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(1, ge=1)
    memory: MemoryMB = 4096
    # seconds; not validated like user input, where a bare integer means minutes
    time: Seconds = Field(default=3600, validate_default=False)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    modules: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    venv: str | None = Field(None, description="a virtual environment to activate in the job")
    extra_sbatch: list[str] = Field(default_factory=list, description="more sbatch options, e.g. --exclusive")

    @field_validator("partition", "account", "qos")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return _slurm_name(value, "this name")

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, value: str | None) -> str | None:
        if value is not None and not CONSTRAINT.fullmatch(value):
            raise ValueError("a constraint is feature names joined by & | , * with [ ] ( ) groups, "
                             "e.g. gpu&a100 or [rack1|rack2]; no spaces, quotes or $")
        return value

    @field_validator("modules", "venv")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return _single_line(value)

    @field_serializer("time", when_used="json")
    def _time_text(self, value: int) -> str:
        # as D-HH:MM:SS, so that a dumped spec loads back to the same time (a bare int would be minutes)
        return format_slurm_time(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"environment variable name {name!r} is not a valid shell name")
        return _single_line(value)

    @field_validator("extra_sbatch")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for option in value:
            if not option.startswith("--") or CONTROL.search(option):
                raise ValueError(f"extra sbatch option {option!r} must be one long option like --exclusive")
        return value

    @property
    def time_slurm(self) -> str:
        """The wall-clock limit as D-HH:MM:SS."""
        return format_slurm_time(self.time)

    @property
    def tasks(self) -> int:
        """Total number of ranks."""
        return self.nodes * self.tasks_per_node


class ContainerSpec(Section):
    image: str = Field(min_length=1)
    binds: list[str] = Field(default_factory=list)
    nv: bool = True
    bootstrap: Literal["docker", "localimage", "library", "oras"] = "docker"
    base: str = "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"
    packages: list[str] = Field(default_factory=list, description="pip packages installed in %post")

    @field_validator("image", "binds", "base", "packages")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        return _single_line(value)


class CheckpointSpec(Section):
    dir: str | None = Field(None, description="default: <run dir>/checkpoints")
    interval: int = Field(1, ge=1)
    unit: Literal["epochs", "steps"] = "epochs"
    keep_last: int = Field(3, ge=1)
    auto_resume: bool = True
    # `async` is a Python keyword: the field is async_save
    async_save: bool = False
    resume_from: str | None = Field(
        None, description="another run's checkpoint file or folder: its weights and optimizer state start this run "
                          "(epochs, data order and RNG start afresh); the run's own checkpoints win on a restart")

    @field_validator("dir", "resume_from")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return _single_line(value)


class PreemptionSpec(Section):
    signal: Literal["USR1", "USR2", "TERM", "INT"] = "USR1"
    grace_seconds: int = Field(120, ge=1, le=65535)
    max_requeues: int = Field(10, ge=0)
    requeue: bool = True


def _values_or_range(value: Any) -> Any:
    if not isinstance(value, (list, dict)):
        # pydantic turns ValueError, not TypeError, into a validation error naming the key
        raise ValueError("give a list of values, or a range {low: ..., high: ...} (random and bayesian searches)")  # noqa: TRY004
    return value


class SweepSpec(Section):
    strategy: Literal["grid", "random", "bayesian"] = "grid"
    metric: str = "f1_score"
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int | None = Field(None, ge=1)
    parallel: int = Field(2, ge=1)
    cv: int = Field(3, ge=2)
    # name -> a list of values, or (random and bayesian) a range {low, high[, log][, step]}; the
    # search checks the ranges (hpc_train.orchestrator.search.validate_search).
    param_space: dict[str, Annotated[Any, BeforeValidator(_values_or_range)]] = Field(min_length=1)

    @field_validator("param_space")
    @classmethod
    def _non_empty(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, choices in value.items():
            if not choices:
                raise ValueError(f"param_space.{name} is empty; give at least one value (or a range)")
        return value


class JobSpec(Section):
    """A whole job: what to train, on what data, how, where, and how to survive preemption."""

    name: str
    model: ModelSpec
    data: DataSpec = Field(default_factory=lambda: DataSpec())
    training: TrainingSpec = Field(default_factory=lambda: TrainingSpec())
    distributed: DistributedSpec = Field(default_factory=lambda: DistributedSpec())
    resources: ResourcesSpec = Field(default_factory=lambda: ResourcesSpec())
    container: ContainerSpec | None = None
    checkpoint: CheckpointSpec = Field(default_factory=lambda: CheckpointSpec())
    preemption: PreemptionSpec = Field(default_factory=lambda: PreemptionSpec())
    sweep: SweepSpec | None = None
    output_dir: str = Field("runs", min_length=1, description="run directories are created under it")

    @field_validator("name")
    @classmethod
    def _job_name(cls, value: str) -> str:
        result = _slurm_name(value, "name")
        assert result is not None
        return result

    @field_validator("output_dir")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return _single_line(value)

    @property
    def world_size(self) -> int:
        """Number of ranks the job starts."""
        return self.resources.tasks
