"""A user's own torch model, named by import path `package.module:factory`."""

from __future__ import annotations

import importlib
from typing import Any

from hpc_train.errors import SpecError


def import_factory(path: str) -> Any:
    """Import `package.module:attr`; a missing module or attribute is a SpecError."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"cannot import {module_name}: {exc}", key="model.type", value=path,
                        hint="make the module importable (PYTHONPATH or pip install) in the job's environment") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SpecError(f"{module_name} has no attribute {attr!r}", key="model.type", value=path) from None


def check_factory_arguments(factory: Any, path: str, hyperparameters: dict[str, Any]) -> None:
    """Refuse model.hyperparameters the factory does not take (unless it takes **kwargs), listing the ones it does."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name, p in parameters.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
             and name not in ("n_features", "n_classes")]
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise SpecError(f"the model factory {path} takes no argument {unknown[0]!r}",
                        key=f"model.hyperparameters.{unknown[0]}", value=hyperparameters[unknown[0]],
                        allowed=valid or "none (it takes only n_features and n_classes)")
