"""Checks before the queue: what the submitting host can see of a job's data and code.

A job that is wrong from the start should fail here, in one message, not after hours in the queue.
`validate` and `submit` run every check; `--no-check-data` skips the data files (for data that
exists only on the compute nodes); a spec with a container skips the model-factory import (the code
lives in the image). The runtime checks the same things again when the job starts.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hpc_train.errors import SpecError
from hpc_train.spec import JobSpec
from hpc_train.spec.model import SKLEARN_MODELS

SHARDED_STRATEGIES = ("fsdp", "model_parallel")  # one shard per rank in each checkpoint file
NO_CHECK_DATA_HINT = "if the file exists only on the compute nodes, pass --no-check-data"
# rows read from the head of a CSV: the header and the two data rows a job needs at least
_HEAD_ROWS = 3


@dataclass(frozen=True)
class Preflight:
    """One check: its name, whether it reads the data files, and the function raising SpecError."""

    name: str
    reads_data: bool
    check: Callable[[JobSpec, Path], None]


def run_preflight(spec: JobSpec, base_dir: Path, *, file: str, check_data: bool = True) -> None:
    """Run every check in order; the first problem is a SpecError naming FILE and the key."""
    for preflight in PREFLIGHTS:
        if preflight.reads_data and not check_data:
            continue
        try:
            preflight.check(spec, base_dir)
        except SpecError as exc:
            raise (exc.with_file(file) if exc.file is None else exc) from None


# -- data files


def _check_data_files(spec: JobSpec, base_dir: Path) -> None:
    for key, path in (("data.train_path", spec.data.train_path), ("data.val_path", spec.data.val_path)):
        if path is None or path.startswith("sklearn:"):
            continue
        header = _csv_head(key, path, base_dir)
        if spec.data.target is not None and spec.data.target not in header:
            raise SpecError(f"target column not in the header of {path}", key="data.target",
                            value=spec.data.target, allowed=header)


def _csv_head(key: str, path: str, base_dir: Path) -> list[str]:
    """The header of the CSV at PATH, after checking that it exists, is readable and holds data rows."""
    resolved = Path(path).expanduser()
    resolved = resolved if resolved.is_absolute() else base_dir / resolved

    def fail(reason: str, hint: str | None = None) -> SpecError:
        return SpecError(reason, key=key, value=path, hint=hint)

    if not resolved.exists():
        raise fail("data file not found" + (f" (looked for {resolved})" if str(resolved) != path else ""),
                   f"paths are relative to the spec file's folder; {NO_CHECK_DATA_HINT}")
    if resolved.is_dir():
        raise fail("data path is a directory, not a CSV file")
    try:
        with resolved.open(newline="", encoding="utf-8") as handle:
            rows = [row for _, row in zip(range(_HEAD_ROWS), csv.reader(handle))]
    except PermissionError:
        raise fail("data file is not readable (permission denied)",
                   f"chmod u+r {resolved}, or {NO_CHECK_DATA_HINT}") from None
    except UnicodeDecodeError:
        raise fail("data file is not UTF-8 text; a CSV with a header row is needed") from None
    except (OSError, csv.Error) as exc:
        raise fail(f"cannot read the data file: {getattr(exc, 'strerror', None) or exc}") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise fail("data file is empty; a CSV with a header row and data rows is needed")
    header = rows[0]
    if len(header) < 2:
        raise fail(f"the CSV header has {len(header)} column ({header[0]!r}); features and a target "
                   "column are needed", "is the file comma-separated?")
    if len(rows) < _HEAD_ROWS:
        raise fail("CSV needs a header row and at least two data rows")
    return header


def _check_resume_from(spec: JobSpec, base_dir: Path) -> None:
    """checkpoint.resume_from names a loadable checkpoint file, or a folder holding one."""
    source = spec.checkpoint.resume_from
    if source is None or spec.model.type in SKLEARN_MODELS:
        return
    from hpc_train.checkpoint import CheckpointError, HDF5CheckpointStore
    from hpc_train.checkpoint.hdf5_file import read_meta

    resolved = Path(source).expanduser()
    resolved = resolved if resolved.is_absolute() else base_dir / resolved

    def fail(reason: str) -> SpecError:
        return SpecError(reason, key="checkpoint.resume_from", value=source,
                         hint="a checkpoint file (ckpt-*.h5) or a checkpoint folder, whose newest complete one is "
                              f"used; relative paths are from the spec file's folder; {NO_CHECK_DATA_HINT}")

    if spec.distributed.strategy in SHARDED_STRATEGIES:
        raise SpecError("starting from another run's weights works with replicated strategies only",
                        key="checkpoint.resume_from", value=source,
                        hint=f"distributed.strategy is {spec.distributed.strategy}; use ddp or horovod for this run")
    if not resolved.exists():
        raise fail("no such checkpoint file or folder" + (f" (looked for {resolved})" if str(resolved) != source else ""))
    newest = HDF5CheckpointStore(resolved, keep_last=None, read_only=True).latest() if resolved.is_dir() else resolved
    if newest is None:
        raise fail("the folder holds no complete checkpoint")
    try:
        written_by = read_meta(newest).get("strategy")
    except CheckpointError as exc:
        raise fail(f"not a complete hpc-train checkpoint: {exc}") from None
    if written_by in SHARDED_STRATEGIES:
        raise fail(f"{newest.name} holds one shard of a {written_by} run; only replicated (ddp, horovod) checkpoints "
                   "can start another run")


# -- model code


def _check_sklearn_hyperparameters(spec: JobSpec, base_dir: Path) -> None:
    if spec.model.type not in SKLEARN_MODELS:
        return
    from hpc_train.models.sklearn_models import build_sklearn

    build_sklearn(spec.model.type, spec.model.hyperparameters, spec.training.seed)  # the estimator's own checks


@contextlib.contextmanager
def _job_import_path(spec: JobSpec, base_dir: Path) -> Iterator[None]:
    """sys.path as the job will have it: the spec's resources.env.PYTHONPATH comes first (relative
    entries from the spec's folder), so a module the job imports from there is found here too."""
    extra = [str((base_dir / entry).resolve()) for entry in spec.resources.env.get("PYTHONPATH", "").split(os.pathsep)
             if entry]
    saved = list(sys.path)
    sys.path[:0] = extra
    try:
        yield
    finally:
        sys.path[:] = saved


def _check_factory(spec: JobSpec, base_dir: Path) -> None:
    if ":" not in spec.model.type or spec.container is not None:
        return
    from hpc_train.models.factory import import_factory

    with _job_import_path(spec, base_dir):
        factory = import_factory(spec.model.type)
    if not callable(factory):
        raise SpecError("the model factory is not callable", key="model.type", value=spec.model.type,
                        hint="name a function (or class) that builds the torch model")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to compare against
    try:
        signature.bind(n_features=1, n_classes=2, **spec.model.hyperparameters)
    except TypeError as exc:
        empty = inspect.Parameter.empty
        signature = signature.replace(parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
                                      return_annotation=empty)  # names and defaults are what the user needs
        raise SpecError(f"the model factory cannot take these arguments ({exc})", key="model.hyperparameters",
                        value=spec.model.hyperparameters,
                        hint=f"{spec.model.type} is called with n_features, n_classes and the hyperparameters "
                             f"as keywords; its signature is {signature}") from None


PREFLIGHTS = (
    Preflight("data files", reads_data=True, check=_check_data_files),
    Preflight("checkpoint to start from", reads_data=True, check=_check_resume_from),
    Preflight("scikit-learn hyperparameters", reads_data=False, check=_check_sklearn_hyperparameters),
    Preflight("model factory", reads_data=False, check=_check_factory),
)

