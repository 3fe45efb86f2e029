"""Job specs: typed sections loaded once from YAML, with every mistake reported as a SpecError."""

from hpc_train.spec.load import dump_spec, load_spec, parse_spec, resolve_paths, spec_hash, validate_spec
from hpc_train.spec.model import (
    BUILTIN_MODELS,
    SKLEARN_MODELS,
    CheckpointSpec,
    ContainerSpec,
    DataSpec,
    DistributedSpec,
    JobSpec,
    ModelSpec,
    PreemptionSpec,
    ResourcesSpec,
    SweepSpec,
    TrainingSpec,
)

__all__ = [
    "BUILTIN_MODELS", "SKLEARN_MODELS", "CheckpointSpec", "ContainerSpec", "DataSpec", "DistributedSpec",
    "JobSpec", "ModelSpec", "PreemptionSpec", "ResourcesSpec", "SweepSpec", "TrainingSpec",
    "dump_spec", "load_spec", "parse_spec", "resolve_paths", "spec_hash", "validate_spec",
]
