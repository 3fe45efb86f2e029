"""The directory side of the store: first runs, naming, the latest pointer, pruning, temp files, shards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from hpc_train.checkpoint import CheckpointError, CheckpointStore, HDF5CheckpointStore
from hpc_train.checkpoint.hdf5 import _HOST

pytestmark = pytest.mark.checkpoint


def save_steps(store: HDF5CheckpointStore, steps: list[int]) -> list[Path]:
    return [store.save({"x": torch.full((4,), float(s))}, step=s) for s in steps]


def test_first_run_nonexistent_or_empty_directory(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "there"
    store = HDF5CheckpointStore(missing)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.load() is None
        assert store.latest() is None
        assert store.list() == []
        assert store.prune(1) == []
    assert not missing.exists()  # reading never creates the directory
    assert HDF5CheckpointStore(tmp_path).load() is None
    assert isinstance(store, CheckpointStore)


def test_names_and_latest_pointer(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path, keep_last=None)
    paths = save_steps(store, [1, 5, 12])
    assert [p.name for p in paths] == ["ckpt-000000001.h5", "ckpt-000000005.h5", "ckpt-000000012.h5"]
    assert (tmp_path / "latest").read_text().strip() == "ckpt-000000012.h5"
    assert store.latest() == paths[-1]
    assert store.list() == paths
    ck = store.load()
    assert ck is not None and ck.step == 12 and torch.equal(ck.state["x"], torch.full((4,), 12.0))
    assert store.load(paths[0]).step == 1  # type: ignore[union-attr]


def test_pointer_is_trusted_only_when_it_names_a_valid_newest_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HDF5CheckpointStore(tmp_path, keep_last=None)
    paths = save_steps(store, [1, 2, 3])
    pointer = tmp_path / "latest"
    pointer.write_text("ckpt-000000001.h5\n")  # stale: a crash between rename and pointer update
    assert store.latest() == paths[2]
    pointer.write_text("ckpt-000000099.h5\n")  # names a file that is gone
    assert store.latest() == paths[2]
    for garbage in ("../../etc/passwd", "../elsewhere/ckpt-000000009.h5", ""):
        pointer.write_text(garbage + "\n")
        assert store.latest() == paths[2]
    # A file another node's directory listing does not show yet (NFS caching) is found through the pointer.
    pointer.write_text(paths[2].name + "\n")
    monkeypatch.setattr(store, "_scan", lambda: paths[:2])
    assert store.latest() == paths[2]
    pointer.write_text(paths[0].name + "\n")
    assert store.latest() == paths[1]


def test_keep_last_prunes_after_each_save(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path, keep_last=2)
    paths = save_steps(store, [1, 2, 3, 4, 5])
    assert store.list() == paths[-2:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000000004.h5", "ckpt-000000005.h5", "latest"]
    assert store.prune(1) == [paths[3]]
    assert store.list() == [paths[4]]


def test_keep_all_and_bad_arguments(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path, keep_last=None)
    save_steps(store, list(range(6)))
    assert len(store.list()) == 6
    with pytest.raises(CheckpointError, match="keep_last"):
        HDF5CheckpointStore(tmp_path, keep_last=0)
    with pytest.raises(CheckpointError, match="keep_last"):
        store.prune(0)
    for bad in (-1, 1.5, True):
        with pytest.raises(CheckpointError, match="step"):
            store.save({"x": 1}, step=bad)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="JSON"):
        store.save({"x": 1}, step=9, meta={"t": torch.ones(1)})
    assert len(store.list()) == 6 and not list(tmp_path.glob("*.tmp"))


def test_tmp_files_are_never_listed_and_stale_ones_are_removed_on_open(tmp_path: Path) -> None:
    store = HDF5CheckpointStore(tmp_path)
    good = save_steps(store, [1])[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f"ckpt-000000002.h5.{_HOST}.{dead_pid}.tmp"
    stale.write_bytes(good.read_bytes())  # even a complete-looking tmp file is never used
    stale_pointer = tmp_path / f"latest.{_HOST}.{dead_pid}.tmp"
    stale_pointer.write_text("ckpt-000000002.h5.tmp")
    live = tmp_path / f"ckpt-000000003.h5.{_HOST}.{os.getpid()}.tmp"  # a writer still running here
    live.write_bytes(b"in progress")
    other_host = tmp_path / f"ckpt-000000004.h5.{socket.gethostname()}-other.{os.getpid()}.tmp"
    other_host.write_bytes(b"orphan from a node that died")
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_text("not ours")

    assert store.list() == [good] and store.latest() == good
    HDF5CheckpointStore(tmp_path)
    assert not stale.exists() and not stale_pointer.exists() and not other_host.exists()
    assert live.exists() and unrelated.exists()


def test_prefix_keeps_runs_apart(tmp_path: Path) -> None:
    a = HDF5CheckpointStore(tmp_path, prefix="a", keep_last=1)
    b = HDF5CheckpointStore(tmp_path, prefix="b", keep_last=1)
    save_steps(a, [1, 2])
    save_steps(b, [5])
    assert [p.name for p in a.list()] == ["a-000000002.h5"]
    assert [p.name for p in b.list()] == ["b-000000005.h5"]
    assert a.latest() == tmp_path / "a-000000002.h5"  # the shared pointer names b's file: ignored


def test_sharded_ranks_write_and_find_their_own_files(tmp_path: Path) -> None:
    r0 = HDF5CheckpointStore(tmp_path, rank=0, sharded=True)
    r1 = HDF5CheckpointStore(tmp_path, rank=1, sharded=True)
    r0.save({"rank": 0, "x": torch.zeros(2)}, step=1)
    r1.save({"rank": 1, "x": torch.ones(2)}, step=1)
    r0.save({"rank": 0, "x": torch.zeros(2)}, step=2)  # rank 1 was preempted before writing step 2
    assert (tmp_path / "ckpt-000000002.rank0.h5").exists()
    assert (tmp_path / "latest.rank0").read_text().strip() == "ckpt-000000002.rank0.h5"
    assert r1.latest() == tmp_path / "ckpt-000000001.rank1.h5"
    ck = r1.load()
    assert ck is not None and ck.step == 1 and ck.state["rank"] == 1
    assert [p.name for p in r0.list()] == ["ckpt-000000001.rank0.h5", "ckpt-000000002.rank0.h5"]
    unsharded = HDF5CheckpointStore(tmp_path)
    assert unsharded.list() == []  # shard files are not whole checkpoints
