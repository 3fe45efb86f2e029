"""Helpers for the checkpoint tests: exact tree comparison and corrupting files on purpose."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch


def assert_same(a: Any, b: Any, path: str = "state") -> None:
    """Exact equality of two state trees: same container and scalar types, dtypes, shapes and bits."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), \
        f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), f"{path}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert bits(a) == bits(b), f"{path}: tensor bits differ"
    elif isinstance(a, (np.ndarray, np.generic)):
        assert (a.dtype, np.shape(a)) == (b.dtype, np.shape(b)), f"{path}: {a.dtype}{np.shape(a)} != {b.dtype}{np.shape(b)}"
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), f"{path}: array bits differ"
    elif isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), f"{path}: keys {list(a)} != {list(b)}"
        for (ka, va), kb in zip(a.items(), b.keys(), strict=True):
            assert type(ka) is type(kb), f"{path}: key {ka!r} type changed"
            assert_same(va, b[kb], f"{path}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{path}: {a!r} != {b!r}"
    else:
        assert a == b and repr(a) == repr(b), f"{path}: {a!r} != {b!r}"


def bits(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor, so NaNs and -0.0 compare exactly."""
    t = t.detach().resolve_conj().resolve_neg().contiguous()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def dataset_offset(path: Path, name_part: str) -> tuple[int, int]:
    """File offset and size of the raw data of the first /tensors dataset whose name contains `name_part`."""
    with h5py.File(path, "r") as f:
        for name, ds in f["tensors"].items():
            if name_part in name:
                return int(ds.id.get_offset()), int(ds.id.get_storage_size())
    raise AssertionError(f"no dataset matching {name_part!r} in {path}")


def flip_bytes(path: Path, offset: int, count: int = 4) -> None:
    """Invert `count` bytes of `path` at `offset` (a bit-rot or torn-write stand-in)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))
