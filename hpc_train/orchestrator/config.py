"""The Python API's job configuration (the brief's dict) turned into a validated JobSpec.

`{"model": "svm", "data_path": "sklearn:digits", "params": {"C": 2.0}, "epochs": 5}` and
`resources={"cpu": 4, "memory": "8GB", "gpu": 1}` become spec sections; every mistake is a SpecError
that names the key as the caller wrote it (`params.C`, `resources.cpu`), not the spec's key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpc_train.errors import SpecError
from hpc_train.spec import JobSpec, validate_spec
from hpc_train.spec.model import ModelSpec, ResourcesSpec, TrainingSpec

WHERE = "config"

# The brief's short resource names -> ResourcesSpec fields (the spec's own names are accepted too).
RESOURCE_ALIASES: dict[str, str] = {
    "cpu": "cpus_per_task", "cpus": "cpus_per_task", "gpu": "gpus_per_node", "gpus": "gpus_per_node",
    "mem": "memory", "walltime": "time", "tasks": "tasks_per_node",
}
# Top-level config keys that belong to the data section.
DATA_KEYS: dict[str, str] = {"data_path": "train_path", "train_path": "train_path", "val_path": "val_path",
                             "target": "target", "val_fraction": "val_fraction", "batch_size": "batch_size",
                             "standardize": "standardize", "features": "features", "drop": "drop"}
# Whole spec sections a config may carry as they are.
SECTION_KEYS = ("distributed", "container", "checkpoint", "preemption")
PARAM_KEYS = ("hyperparameters", "params")
MODEL_FIELDS = tuple(f for f in ModelSpec.model_fields if f not in ("type", "hyperparameters"))
TRAINING_FIELDS = tuple(TrainingSpec.model_fields)


class _Origins:
    """Remembers which caller key each spec key path came from, to name it in errors."""

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}

    def note(self, spec_path: str, caller_key: str) -> None:
        self.by_path[spec_path] = caller_key

    def put(self, section: dict[str, Any], spec_path: str, value: Any, caller_key: str) -> None:
        """Set one spec field; the same field given under two caller keys is refused, not overwritten."""
        field = spec_path.rsplit(".", 1)[-1]
        if field in section:
            first = self.by_path.get(spec_path, spec_path)
            raise SpecError(f"{spec_path} is given twice (also as {first!r}); give it once", file=WHERE,
                            key=caller_key, value=value)
        section[field] = value
        self.note(spec_path, caller_key)

    def translate(self, spec_key: str | None) -> str | None:
        if spec_key is None:
            return None
        parts = spec_key.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self.by_path:
                return ".".join([self.by_path[prefix], *parts[cut:]])
        return spec_key


def resources_section(resources: Mapping[str, Any] | None, origins: _Origins | None = None,
                      where: str = "resources", given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`{"cpu": 4, "memory": "8GB", "gpu": 1}` -> ResourcesSpec fields; unknown names are SpecErrors.

    given: fields already set elsewhere (the config's own resources); naming one again is refused.
    """
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise SpecError("resources must be a mapping such as {'cpu': 4, 'memory': '8GB', 'gpu': 1}",
                        file=WHERE, key=where, value=resources)
    section: dict[str, Any] = {}
    allowed = sorted([*RESOURCE_ALIASES, *ResourcesSpec.model_fields])
    for key, value in resources.items():
        field = RESOURCE_ALIASES.get(key, key)
        if field not in ResourcesSpec.model_fields:
            raise SpecError("unknown resource", file=WHERE, key=f"{where}.{key}", value=value, allowed=allowed)
        if field in section or field in (given or {}):
            raise SpecError(f"resource given twice (as {key!r} and as another name for {field}, or in both the "
                            "config and the resources argument)", file=WHERE, key=f"{where}.{key}", value=value)
        section[field] = value
        if origins is not None:
            origins.note(f"resources.{field}", f"{where}.{key}")
    return section


def spec_from_config(name: str, config: Mapping[str, Any] | JobSpec, *, resources: Mapping[str, Any] | None = None,
                     output_dir: str = "runs", checkpoint: Mapping[str, Any] | None = None) -> JobSpec:
    """A validated JobSpec from the brief's config dict (or a JobSpec, or a spec-shaped mapping)."""
    if isinstance(config, JobSpec):
        data = config.model_dump(mode="json", exclude_none=True)
        data["name"] = name
        if resources:
            data["resources"] = {**data.get("resources", {}), **resources_section(
                resources, given=config.resources.model_dump(exclude_unset=True))}
        if checkpoint and "checkpoint" not in config.model_fields_set:
            data["checkpoint"] = dict(checkpoint)
        return _validate(data, _Origins())
    if not isinstance(config, Mapping):
        raise SpecError("config must be a mapping such as {'model': 'random_forest', 'data_path': "
                        "'sklearn:digits', 'params': {...}}", file=WHERE, value=config)
    origins = _Origins()
    if isinstance(config.get("model"), Mapping):  # already shaped like a YAML spec
        if "name" in config and config["name"] != name:
            raise SpecError("the job's name is given twice, differently", file=WHERE, key="name",
                            value=config["name"], hint=f"leave it out of the config; the job is named {name!r}")
        data = {"name": name, "output_dir": output_dir, **dict(config)}
    else:
        data = _from_brief(name, config, origins, output_dir)
    own = data.get("resources", {})
    spec_resources = {**own, **resources_section(resources, origins,
                                                 given=own if isinstance(own, Mapping) else None)}
    if spec_resources:
        data["resources"] = spec_resources
    if checkpoint and "checkpoint" not in config:
        data["checkpoint"] = dict(checkpoint)
    return _validate(data, origins)


def _from_brief(name: str, config: Mapping[str, Any], origins: _Origins, output_dir: str) -> dict[str, Any]:
    allowed = sorted(["model", "name", "resources", "data", *PARAM_KEYS, *DATA_KEYS, *SECTION_KEYS,
                      *MODEL_FIELDS, *TRAINING_FIELDS])
    if "model" not in config:
        raise SpecError("required key is missing", file=WHERE, key="model", allowed=allowed)
    model: dict[str, Any] = {"type": config["model"]}
    origins.note("model.type", "model")
    data: dict[str, Any] = {}
    training: dict[str, Any] = {}
    spec: dict[str, Any] = {"name": name, "output_dir": output_dir}
    given = [key for key in PARAM_KEYS if key in config]
    if len(given) > 1:
        raise SpecError("give hyperparameters once, as 'hyperparameters' or as 'params'", file=WHERE, key=given[1])
    params_key = given[0] if given else "params"
    params = config.get(params_key) or {}
    if not isinstance(params, Mapping):
        raise SpecError("hyperparameters must be a mapping of name to value", file=WHERE, key=params_key,
                        value=params)
    for key, value in config.items():
        if key in ("model", "name", *PARAM_KEYS):
            continue
        if key == "data":
            if isinstance(value, Mapping):
                for field, item in value.items():
                    origins.put(data, f"data.{field}", item, f"data.{field}")
            else:
                origins.put(data, "data.train_path", value, "data")
        elif key == "resources":
            spec["resources"] = resources_section(value, origins)
        elif key in DATA_KEYS:
            origins.put(data, f"data.{DATA_KEYS[key]}", value, key)
        elif key in SECTION_KEYS:
            spec[key] = value
        elif key in MODEL_FIELDS:
            origins.put(model, f"model.{key}", value, key)
        elif key in TRAINING_FIELDS:
            origins.put(training, f"training.{key}", value, key)
        else:
            raise SpecError("unknown key", file=WHERE, key=key, value=value, allowed=allowed)
    _place_params(config["model"], params, params_key, model, training, data, origins)
    spec.update({"model": model, "data": data, "training": training})
    return spec


def _place_params(model_type: Any, params: Mapping[str, Any], params_key: str, model: dict[str, Any],
                  training: dict[str, Any], data: dict[str, Any], origins: _Origins) -> None:
    """scikit-learn: all hyperparameters go to the estimator. torch: MLP shape to model, the rest to training."""
    origins.note("model.hyperparameters", params_key)
    is_torch = isinstance(model_type, str) and (model_type == "neural_network" or ":" in model_type)
    if not is_torch:
        model["hyperparameters"] = dict(params)
        return
    extra: dict[str, Any] = {}
    for key, value in params.items():
        if key in MODEL_FIELDS and model_type == "neural_network":  # a factory takes its own shape arguments
            origins.put(model, f"model.{key}", value, f"{params_key}.{key}")
        elif key in TRAINING_FIELDS:
            origins.put(training, f"training.{key}", value, f"{params_key}.{key}")
        elif key == "batch_size":
            origins.put(data, "data.batch_size", value, f"{params_key}.{key}")
        elif model_type == "neural_network":
            raise SpecError("unknown hyperparameter for neural_network", file=WHERE, key=f"{params_key}.{key}",
                            value=value, allowed=sorted([*MODEL_FIELDS, *TRAINING_FIELDS, "batch_size"]))
        else:
            extra[key] = value  # a user's factory takes its own keyword arguments
    model["hyperparameters"] = extra


def _validate(data: dict[str, Any], origins: _Origins) -> JobSpec:
    try:
        spec = validate_spec(data, file=WHERE)
    except SpecError as exc:
        raise SpecError(exc.reason, file=WHERE, key=origins.translate(exc.key), value=exc.value,
                        allowed=exc.allowed, hint=exc.hint) from None
    return spec


def own_checkpoint(config: Mapping[str, Any] | JobSpec) -> bool:
    """Whether the caller's config brings its own checkpoint section (else the orchestrator's settings apply)."""
    return "checkpoint" in (config.model_fields_set if isinstance(config, JobSpec) else config)


def checkpoint_section(checkpoint_dir: str | Path | None, interval: int, auto_resume: bool, *, name: str,
                       job_id: str, resume: bool) -> dict[str, Any]:
    """The checkpoint section for one submission.

    With resume_from_checkpoint the folder is `<checkpoint_dir>/<name>`, the same for every submission
    of that name, so a new job starts from the last one's checkpoint; otherwise each job gets its own.
    """
    section: dict[str, Any] = {"interval": interval, "auto_resume": bool(auto_resume or resume)}
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir).expanduser().absolute() / (name if resume else f"{name}-{job_id}")
        section["dir"] = str(folder)
    return section
