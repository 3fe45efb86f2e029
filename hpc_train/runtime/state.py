"""Training state that must survive a restart bit for bit: RNG streams and parameter digests."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn


def derive_seed(seed: int, rank: int) -> int:
    """A per-rank seed: different ranks draw different dropout masks, reproducibly."""
    return (seed * 1_000_003 + rank) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and numbers (no pickles), for a checkpoint."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "has_gauss_next": gauss_next is not None,
                   "gauss_next": float(gauss_next) if gauss_next is not None else 0.0},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = {str(i): s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return rng


def restore_rng(rng: Mapping[str, Any]) -> None:
    """Put back what capture_rng() saved."""
    torch.set_rng_state(torch.as_tensor(rng["torch"], dtype=torch.uint8).cpu())
    npy = rng["numpy"]
    keys = np.asarray(torch.as_tensor(npy["keys"]).numpy(), dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"])))
    py = rng["python"]
    state = tuple(int(v) for v in torch.as_tensor(py["state"]).tolist())
    random.setstate((int(py["version"]), state, float(py["gauss_next"]) if py["has_gauss_next"] else None))
    if "cuda" in rng and torch.cuda.is_available():
        for index, value in rng["cuda"].items():
            torch.cuda.set_rng_state(torch.as_tensor(value, dtype=torch.uint8).cpu(), int(index))


def final_param_digest(model: nn.Module) -> str:
    """sha256 over parameters sorted by name: name, dtype, shape and raw bytes of each."""
    inner = getattr(model, "module", model) if isinstance(model, nn.Module) else model
    return tensors_digest(dict(inner.named_parameters()))


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over named tensors sorted by name: name, dtype, shape and raw bytes of each."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors.items(), key=lambda item: item[0]):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(str(data.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
