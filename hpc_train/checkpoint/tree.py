"""Split a state tree into a JSON skeleton and a list of arrays, and put it back together.

The skeleton is plain JSON: None, bool, int, float, str and lists stay as they are; every other
node is a one-key object naming its kind, so nothing in a file is ever ambiguous or executable:
``{"tuple": [...]}``, ``{"dict": [[key, value], ...]}`` (keys keep their JSON type, so int keys
come back as int), ``{"tensor": name}``, ``{"ndarray": name}``, ``{"npscalar": name}``.
Arrays are stored in a dtype HDF5 reads without conversion (bfloat16 as a uint16 view, bool as
uint8, complex as pairs of reals); the original dtype is recorded next to them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hpc_train.checkpoint.store import CheckpointError, CorruptCheckpointError

# Torch dtypes numpy has no exact match for, and the same-size dtype their bits are stored as.
_TORCH_BITS_AS: dict[torch.dtype, torch.dtype] = {
    torch.bfloat16: torch.uint16,
    torch.bool: torch.uint8,
    **{
        getattr(torch, name): torch.uint8
        for name in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu")
        if hasattr(torch, name)
    },
}
_TORCH_NATIVE = (
    torch.float16, torch.float32, torch.float64,
    torch.int8, torch.int16, torch.int32, torch.int64,
    torch.uint8, torch.uint16, torch.uint32, torch.uint64,
)
_TORCH_COMPLEX: dict[torch.dtype, torch.dtype] = {
    torch.complex32: torch.float16, torch.complex64: torch.float32, torch.complex128: torch.float64,
}
TORCH_DTYPES: dict[str, torch.dtype] = {
    str(dt).removeprefix("torch."): dt for dt in (*_TORCH_NATIVE, *_TORCH_BITS_AS, *_TORCH_COMPLEX)
}
_NUMPY_KINDS = "biufc"
_JSON_SCALARS = (str, int, float, bool, type(None))
ARRAY_TAGS = ("tensor", "ndarray", "npscalar")


@dataclass
class ArrayLeaf:
    """One array of the tree as it is written: its dataset name, recorded dtype and stored bytes."""

    name: str
    dtype: str
    data: np.ndarray


def encode_tree(state: Any) -> tuple[Any, list[ArrayLeaf]]:
    """The JSON skeleton of `state` and the arrays it refers to, in tree order."""
    leaves: list[ArrayLeaf] = []

    def leaf(tag: str, data: np.ndarray, dtype: str, path: str) -> dict[str, str]:
        name = f"{len(leaves):06d} {path.replace('/', '|')[:160] or '<root>'}"
        leaves.append(ArrayLeaf(name, dtype, data))
        return {tag: name}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, _JSON_SCALARS):
            return obj
        if isinstance(obj, torch.Tensor):
            return leaf("tensor", *_tensor_storage(obj, path), path)
        if isinstance(obj, np.ndarray):
            return leaf("ndarray", *_array_storage(obj, path), path)
        if isinstance(obj, np.generic):
            return leaf("npscalar", *_array_storage(np.asarray(obj), path), path)
        if isinstance(obj, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"tuple": [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, Mapping):
            items = []
            for k, v in obj.items():
                if not isinstance(k, _JSON_SCALARS):
                    raise CheckpointError(f"checkpoint state {path or '<root>'}: key {k!r} of type "
                                          f"{type(k).__name__} cannot be stored; use str or int keys")
                items.append([k, walk(v, f"{path}.{k}" if path else str(k))])
            metadata = getattr(obj, "_metadata", None)  # nn.Module.state_dict() versions its modules here
            if isinstance(metadata, Mapping):
                return {"odict": items, "metadata": walk(metadata, f"{path}._metadata")}
            return {"dict": items}
        raise CheckpointError(
            f"checkpoint state {path or '<root>'}: a {type(obj).__name__} cannot be stored",
        )

    return walk(state, ""), leaves


def decode_tree(skeleton: Any, read: Callable[[str, str], Any]) -> Any:
    """Rebuild the tree from its skeleton; `read(tag, name)` returns the array a leaf names."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        if "odict" in node:
            out: dict[Any, Any] = OrderedDict((k, walk(v)) for k, v in _pairs(node["odict"]))
            out._metadata = walk(node["metadata"])  # type: ignore[attr-defined]
            return out
        if len(node) != 1:
            raise CorruptCheckpointError(f"unknown node in checkpoint tree: {sorted(node)}")
        ((tag, value),) = node.items()
        if tag == "tuple" and isinstance(value, list):
            return tuple(walk(v) for v in value)
        if tag == "dict":
            return {k: walk(v) for k, v in _pairs(value)}
        if tag in ARRAY_TAGS and isinstance(value, str):
            return read(tag, value)
        raise CorruptCheckpointError(f"unknown node in checkpoint tree: {tag!r}")

    return walk(skeleton)


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise CorruptCheckpointError("malformed dict node in checkpoint tree")
    return [(k, v) for k, v in value]


def _tensor_storage(t: torch.Tensor, path: str) -> tuple[np.ndarray, str]:
    dtype = t.dtype
    if t.layout != torch.strided or t.is_quantized or dtype not in TORCH_DTYPES.values():
        raise CheckpointError(f"checkpoint state {path}: tensor of {dtype}/{t.layout} cannot be stored; "
                              "convert it to a dense tensor of a standard dtype")
    t = t.detach().cpu().resolve_conj().resolve_neg().contiguous()
    if dtype in _TORCH_COMPLEX:
        t = torch.view_as_real(t)
    elif dtype in _TORCH_BITS_AS:
        t = t.view(_TORCH_BITS_AS[dtype])
    return t.numpy(), str(dtype).removeprefix("torch.")


def _array_storage(a: np.ndarray, path: str) -> tuple[np.ndarray, str]:
    if a.dtype.kind not in _NUMPY_KINDS or a.dtype.fields is not None:
        raise CheckpointError(f"checkpoint state {path}: numpy array of dtype {a.dtype} cannot be stored; "
                              "only bool, integer, float and complex arrays can")
    a = a if a.flags.c_contiguous else a.copy(order="C")  # ascontiguousarray would make 0-d 1-d
    if a.dtype.kind == "b":
        return a.view(np.uint8), a.dtype.str
    if a.dtype.kind == "c":
        return a.reshape(a.shape + (1,)).view(_real_of(a.dtype)), a.dtype.str
    return a, a.dtype.str


def _real_of(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"{dtype.byteorder}f{dtype.itemsize // 2}")


def empty_like_stored(tag: str, dtype: str, shape: tuple[int, ...]) -> tuple[np.ndarray, Callable[[], Any]]:
    """A buffer to read a stored array into, and a function turning the filled buffer into the leaf."""
    if tag == "tensor":
        torch_dtype = TORCH_DTYPES.get(dtype)
        if torch_dtype is None:
            raise CorruptCheckpointError(f"unknown tensor dtype {dtype!r}")
        stored_dtype = _TORCH_COMPLEX.get(torch_dtype) or _TORCH_BITS_AS.get(torch_dtype) or torch_dtype
        t = torch.empty(shape, dtype=stored_dtype)
        if torch_dtype in _TORCH_COMPLEX:
            return t.numpy(), lambda: torch.view_as_complex(t)
        return t.numpy(), lambda: t.view(torch_dtype)
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as e:
        raise CorruptCheckpointError(f"unknown array dtype {dtype!r}") from e
    if np_dtype.kind not in _NUMPY_KINDS or np_dtype.fields is not None:
        raise CorruptCheckpointError(f"array dtype {dtype!r} is not a plain numeric dtype")
    stored = np.dtype(np.uint8) if np_dtype.kind == "b" else _real_of(np_dtype) if np_dtype.kind == "c" else np_dtype
    buf = np.empty(shape, dtype=stored)

    def finish() -> Any:
        out = buf.view(np_dtype)[..., 0] if np_dtype.kind == "c" else buf.view(np_dtype)
        return out[()] if tag == "npscalar" else out

    return buf, finish
