"""Damaged or hostile checkpoint files are detected, refused, and the previous good one is used."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from ckpt_helpers import dataset_offset, flip_bytes

from hpc_train.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    HDF5CheckpointStore,
    UnsafeCheckpointError,
)
from hpc_train.checkpoint.hdf5_file import _CHECKSUMS as CHECKSUMS

pytestmark = pytest.mark.checkpoint


def state_for(step: int) -> dict[str, object]:
    # "small" is read through HDF5, "large" (2 MB) through the parallel pread path.
    return {"small": torch.full((100,), float(step)), "large": torch.full((512 * 1024,), float(step)),
            "step": step}


@pytest.fixture
def two_checkpoints(tmp_path: Path) -> tuple[HDF5CheckpointStore, Path, Path]:
    store = HDF5CheckpointStore(tmp_path, keep_last=None)
    older = store.save(state_for(1), step=1)
    newer = store.save(state_for(2), step=2)
    return store, older, newer


def assert_falls_back(store: HDF5CheckpointStore, older: Path, newer: Path, reason: str) -> None:
    with pytest.warns(RuntimeWarning, match=reason) as record:
        ck = store.load()
    assert any(str(newer) in str(w.message) for w in record)
    assert ck is not None and ck.path == older and ck.step == 1
    assert torch.equal(ck.state["large"], torch.full((512 * 1024,), 1.0))


@pytest.mark.parametrize("which", ["small", "large"])
def test_flipped_bytes_in_a_dataset_are_detected(two_checkpoints, which: str) -> None:
    store, older, newer = two_checkpoints
    offset, size = dataset_offset(newer, which)
    flip_bytes(newer, offset + size // 2)
    with pytest.raises(CorruptCheckpointError, match=f"checksum mismatch in dataset .*{which}"):
        store.load(newer)
    assert_falls_back(store, older, newer, "checksum mismatch")


def test_truncated_file_is_skipped(two_checkpoints) -> None:
    store, older, newer = two_checkpoints
    os.truncate(newer, newer.stat().st_size // 2)
    with pytest.raises(CorruptCheckpointError):
        store.load(newer)
    assert_falls_back(store, older, newer, "")
    with pytest.warns(RuntimeWarning):
        assert store.latest() == older
    assert store.list() == [older]


def test_state_tree_tampering_is_detected(two_checkpoints) -> None:
    store, older, newer = two_checkpoints
    with h5py.File(newer, "r+") as f:
        f.attrs["tree"] = str(f.attrs["tree"]).replace('"step", 2', '"step", 3')
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch in the state tree"):
        store.load(newer)
    assert_falls_back(store, older, newer, "state tree")


def test_file_without_completeness_marker_is_skipped(two_checkpoints) -> None:
    store, older, newer = two_checkpoints
    with h5py.File(newer, "r+") as f:
        del f.attrs["complete"]
    with pytest.warns(RuntimeWarning, match="incomplete"):
        assert store.latest() == older
    assert_falls_back(store, older, newer, "incomplete")


def test_garbage_under_a_checkpoint_name_is_skipped(two_checkpoints) -> None:
    store, older, newer = two_checkpoints
    newer.write_bytes(b"\x80\x04\x95 not hdf5 at all" * 100)
    assert_falls_back(store, older, newer, "not a readable HDF5 file")


# Datasets an attacker (or another tool) might plant: object/pickled payloads must never be read.
PICKLE_LIKE = b"\x80\x04\x95\x1c\x00\x00\x00cos\nsystem\n(S'echo pwned'\ntR."  # bytes only; nothing unpickles them
HOSTILE = {
    "vlen_str": lambda g: g.create_dataset("evil", data=["a", "bc"], dtype=h5py.string_dtype()),
    "vlen_bytes": lambda g: g.create_dataset("evil", shape=(1,), dtype=h5py.vlen_dtype(np.uint8)),
    "opaque_pickle": lambda g: g.create_dataset("evil", data=np.void(PICKLE_LIKE)),
    "reference": lambda g: g.create_dataset("evil", data=[g.ref], dtype=h5py.ref_dtype),
    "compound": lambda g: g.create_dataset("evil", shape=(2,), dtype=[("a", "<f4"), ("b", "S8")]),
    "fixed_bytes": lambda g: g.create_dataset("evil", data=np.array([PICKLE_LIKE])),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_object_or_pickled_datasets_are_refused(two_checkpoints, kind: str) -> None:
    store, older, newer = two_checkpoints
    with h5py.File(newer, "r+") as f:
        HOSTILE[kind](f["tensors"])
    with pytest.raises(UnsafeCheckpointError, match=r"dataset /tensors/evil is refused: .*never unpickle") as info:
        store.load(newer)
    assert isinstance(info.value, CheckpointError)  # a UserError: the CLI prints it without a traceback
    assert_falls_back(store, older, newer, "refused")


def replace_tensor(path: Path, leaf: str, **dataset: Any) -> None:
    """Put another dataset in place of the tensor named `leaf`, keeping its dtype and checksum attributes."""
    with h5py.File(path, "r+") as f:
        name = next(n for n in f["tensors"] if n.endswith(leaf))
        attrs = dict(f["tensors"][name].attrs)
        del f["tensors"][name]
        f["tensors"].create_dataset(name, **dataset).attrs.update(attrs)


def test_hostile_dataset_replacing_a_tensor_is_refused(two_checkpoints) -> None:
    store, _, newer = two_checkpoints
    replace_tensor(newer, "small", data=np.void(PICKLE_LIKE))
    with pytest.raises(UnsafeCheckpointError, match="opaque"):
        store.load(newer)


def test_external_link_in_tensors_is_refused(two_checkpoints, tmp_path: Path) -> None:
    store, _, newer = two_checkpoints
    with h5py.File(newer, "r+") as f:
        f["tensors"]["elsewhere"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    with pytest.raises(UnsafeCheckpointError, match="link"):
        store.load(newer)


def test_only_corrupt_checkpoints_gives_none_with_warnings(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path)
    path = store.save(state_for(1), step=1)
    os.truncate(path, 100)
    with pytest.warns(RuntimeWarning):
        assert store.load() is None


def _retree(f: h5py.File, tree: object) -> None:
    """Replace the state tree with a correct checksum, as a crafted file would."""
    text = json.dumps(tree)
    f.attrs["tree"] = text
    f.attrs["tree_checksum"] = CHECKSUMS[str(f.attrs["checksum_algorithm"])](text.encode())


def test_huge_declared_shape_in_a_small_file_is_refused_without_allocating(two_checkpoints) -> None:
    store, older, newer = two_checkpoints
    # 4 GiB declared, never written: HDF5 stores nothing for it, the file stays small
    replace_tensor(newer, "large", shape=(1 << 30,), dtype="float32")
    assert newer.stat().st_size < 8 << 20
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CorruptCheckpointError, match="declares 4294967296 bytes that are not in the file"):
        store.load(newer)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 64 * 1024, f"peak memory grew by {grown_kib} KiB reading a refused file"
    assert_falls_back(store, older, newer, "not in the file")


def test_one_dataset_referenced_many_times_is_refused(two_checkpoints) -> None:
    store, older, newer = two_checkpoints
    with h5py.File(newer, "r+") as f:
        name = next(n for n in f["tensors"] if n.endswith("large"))
        _retree(f, {"dict": [[f"copy{i}", {"tensor": name}] for i in range(1000)]})
    with pytest.raises(CorruptCheckpointError, match=f"uses dataset '{name}' twice"):
        store.load(newer)
    assert_falls_back(store, older, newer, "twice")
