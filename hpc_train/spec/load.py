"""Load a job spec from YAML once, validate it, and turn every mistake into one SpecError."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hpc_train.errors import SpecError
from hpc_train.spec.model import METRICS, SKLEARN_MODELS, TORCH_MODELS, JobSpec, TrainingSpec

_MAX_SPEC_BYTES = 1 << 20


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader without YAML 1.1 base-60 numbers.

    Plain YAML 1.1 reads `time: 1:30:00` as the integer 5400, which a spec would then take as
    5400 minutes; with this loader it stays the string "1:30:00" that SLURM means.
    """


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(_INT, re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.VERBOSE), list("-+0123456789"))
SpecLoader.add_implicit_resolver(_FLOAT, re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.VERBOSE), list("-+0123456789."))


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader: no arbitrary objects


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> JobSpec:
    """Read, override (`key.path=value`) and validate a YAML spec; every mistake is a SpecError."""
    file = str(path)
    source = Path(path)
    if not source.exists():
        raise SpecError("spec file not found", file=file, hint="check the path; `hpc-train validate FILE` checks a spec")
    if source.is_dir():
        raise SpecError("spec path is a directory, not a YAML file", file=file)
    try:
        raw_bytes = source.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", file=file) from None
    if len(raw_bytes) > _MAX_SPEC_BYTES:
        raise SpecError("spec file is larger than 1 MiB; is it really a job spec?", file=file)
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("spec is not UTF-8 text", file=file) from None
    return parse_spec(text, file=file, overrides=overrides)


def parse_spec(text_or_data: str | Mapping[str, Any], *, file: str = "<spec>",
               overrides: Iterable[str] = ()) -> JobSpec:
    """Validate YAML text or an already-parsed mapping into a JobSpec."""
    if isinstance(text_or_data, str):
        data = _parse_yaml(text_or_data, file)
    else:
        data = copy.deepcopy(dict(text_or_data))
    if not isinstance(data, dict):
        return validate_spec(data, file=file)  # overrides need a mapping; report the document instead
    for override in overrides:
        apply_override(data, override, file=file)
    return validate_spec(data, file=file)


def validate_spec(data: Any, *, file: str = "<spec>") -> JobSpec:
    """Turn a mapping into a JobSpec, or raise a SpecError naming the first bad key."""
    if not isinstance(data, dict):
        raise SpecError("a job spec must be a YAML mapping of sections", file=file,
                        value=_short(data), allowed=list(JobSpec.model_fields))
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise _to_spec_error(exc, file) from None
    _check_consistency(spec, file)
    return spec


def apply_override(data: dict[str, Any], override: str, *, file: str = "<spec>") -> None:
    """Apply one `--set key.path=value` (the value is parsed as a YAML scalar or flow value)."""
    key, sep, value_text = override.partition("=")
    if not sep or not key.strip():
        raise SpecError("override must look like key.path=value", file="--set", value=override)
    try:
        value = _yaml_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    parts = key.strip().split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise SpecError("cannot set a key inside a value that is not a mapping", file="--set",
                            key=".".join(parts[: depth + 1]), value=_short(child))
        node = child
    node[parts[-1]] = value


def spec_hash(spec: JobSpec) -> str:
    """A stable hash of the resolved spec's training-relevant content (not resources or paths)."""
    relevant = spec.model_dump(mode="json", include={"model", "data", "training", "distributed"})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def dump_spec(spec: JobSpec) -> str:
    """The resolved spec as YAML, with every default filled in."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return _yaml_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError(f"invalid YAML at {where}: {exc.problem}", file=file,
                        hint="check indentation and quoting around that line") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None


# neural_network's settings, each in its one place in the spec (model.hyperparameters is not one of them)
MLP_SETTINGS = {"hidden_sizes": "model.hidden_sizes", "dropout": "model.dropout", "batch_size": "data.batch_size",
                **{name: f"training.{name}" for name in TrainingSpec.model_fields}}


def _check_hyperparameters(spec: JobSpec, file: str) -> None:
    """neural_network takes none (its settings have their own keys); scikit-learn models take the estimator's."""
    hyperparameters = spec.model.hyperparameters
    if spec.model.type in TORCH_MODELS and hyperparameters:
        name = next(iter(hyperparameters))
        place = MLP_SETTINGS.get(name)
        hint = (f"write it as {place}: {hyperparameters[name]!r}" if place else
                "neural_network is set by " + ", ".join(MLP_SETTINGS.values())
                + "; a model of your own (model.type: package.module:factory) takes model.hyperparameters")
        raise SpecError("neural_network takes no model.hyperparameters", file=file,
                        key=f"model.hyperparameters.{name}", value=_short(hyperparameters[name]),
                        allowed="none (model.hyperparameters: {})", hint=hint)
    if spec.model.type in SKLEARN_MODELS:
        from hpc_train.models.sklearn_models import check_sklearn_hyperparameters

        try:
            check_sklearn_hyperparameters(spec.model.type, hyperparameters, spec.training.seed)
        except SpecError as exc:
            raise exc.with_file(file) from None


def _check_consistency(spec: JobSpec, file: str) -> None:
    _check_hyperparameters(spec, file)
    if spec.distributed.backend == "nccl" and spec.resources.gpus_per_node == 0:
        raise SpecError("the nccl backend needs GPUs", file=file, key="distributed.backend", value="nccl",
                        allowed=["auto", "gloo", "mpi"], hint="set resources.gpus_per_node >= 1 or use gloo on CPU")
    gres = [option for option in spec.resources.extra_sbatch if re.match(r"--gres(?:[=\s]|$)", option)]
    if gres and spec.resources.gpus_per_node:
        raise SpecError("--gres cannot be combined with resources.gpus_per_node (rendered as --gpus-per-node)",
                        file=file, key="resources.extra_sbatch", value=gres[0],
                        hint="ask for GPUs with resources.gpus_per_node only, or set it to 0 and keep --gres")
    _check_columns(spec, file)
    if spec.sweep is not None and spec.sweep.metric not in METRICS:
        raise SpecError("unknown sweep metric", file=file, key="sweep.metric", value=spec.sweep.metric,
                        allowed=METRICS)
    if spec.distributed.strategy == "data_parallel" and spec.resources.nodes > 1:
        raise SpecError("data_parallel is the single-node form of ddp", file=file, key="distributed.strategy",
                        value="data_parallel", allowed=["ddp", "horovod", "model_parallel"],
                        hint="use strategy: ddp for more than one node")
    if spec.preemption.grace_seconds >= spec.resources.time:
        raise SpecError(f"preemption.grace_seconds ({spec.preemption.grace_seconds} s) must be shorter than "
                        f"resources.time ({spec.resources.time_slurm} = {spec.resources.time} s): the job "
                        "would be signalled before it starts", file=file, key="preemption.grace_seconds",
                        value=spec.preemption.grace_seconds,
                        hint="lower preemption.grace_seconds or raise resources.time")
    if not spec.model.is_torch and spec.world_size > 1:
        key = "nodes" if spec.resources.nodes > 1 else "tasks_per_node"
        raise SpecError("scikit-learn models train in one process", file=file, key=f"resources.{key}",
                        value=getattr(spec.resources, key),
                        hint="use nodes: 1 and tasks_per_node: 1, or a torch model (neural_network) for several ranks")


def _check_columns(spec: JobSpec, file: str) -> None:
    """data.features or data.drop, not both, and only for CSV data (the names are checked against its header)."""
    data = spec.data
    if data.features is not None and data.drop:
        raise SpecError("give the columns to use or the columns to leave out, not both", file=file,
                        key="data.drop", value=data.drop, hint="keep data.features, or data.drop, alone")
    chosen = "data.features" if data.features is not None else "data.drop" if data.drop else None
    if chosen and data.train_path.startswith("sklearn:"):
        raise SpecError("choosing columns needs a CSV file with a header row", file=file, key=chosen,
                        value=data.features if data.features is not None else data.drop,
                        hint=f"{data.train_path} has no named columns; remove {chosen} or use a CSV train_path")


def _to_spec_error(exc: ValidationError, file: str) -> SpecError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    key = ".".join(str(part) for part in loc) or None
    kind = first["type"]
    value = first.get("input")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return SpecError("unknown key" + more, file=file, key=key, value=_short(value), allowed=allowed,
                         hint=_did_you_mean(str(loc[-1]), allowed))
    if kind == "missing":
        return SpecError("required key is missing" + more, file=file, key=key, allowed=_allowed_keys(loc[:-1]) or None)
    if kind in ("literal_error", "enum"):
        expected = first.get("ctx", {}).get("expected", "")
        return SpecError("value not allowed" + more, file=file, key=key, value=_short(value), allowed=expected)
    message = first["msg"]
    message = message.removeprefix("Value error, ")
    return SpecError(message + more, file=file, key=key, value=_short(value))


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section at `loc` (walks the pydantic models)."""
    model: type[BaseModel] | None = JobSpec
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        model = _section_type(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


def resolve_paths(spec: JobSpec, base_dir: Path) -> JobSpec:
    """A copy of spec whose relative data and checkpoint paths are made absolute against base_dir."""
    data = spec.data.model_copy(update={
        "train_path": _absolute(spec.data.train_path, base_dir),
        "val_path": _absolute(spec.data.val_path, base_dir) if spec.data.val_path else None,
    })
    checkpoint = spec.checkpoint.model_copy(update={
        "dir": str(Path(spec.checkpoint.dir).expanduser().absolute()) if spec.checkpoint.dir else None,
        "resume_from": _absolute(spec.checkpoint.resume_from, base_dir) if spec.checkpoint.resume_from else None})
    return spec.model_copy(update={"data": data, "checkpoint": checkpoint})


def _absolute(path: str, base_dir: Path) -> str:
    if path.startswith("sklearn:"):
        return path
    candidate = Path(path).expanduser()
    return str(candidate if candidate.is_absolute() else (base_dir / candidate).absolute())
