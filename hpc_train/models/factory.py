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
