"""Checkpoints as HDF5 files: atomic on any POSIX filesystem, checksummed, no pickle anywhere.

A checkpoint is ``<prefix>-<step:09d>.h5`` (``.rank<r>.h5`` when sharded), laid out as
`hdf5_file.py` describes; the file ``latest`` (``latest.rank<r>``) names the newest. Each file is
written under a temporary name ``<final>.<host>.<pid>.tmp``, fsynced, renamed into place and the
directory fsynced, so a reader sees either the whole file or none of it, on Lustre, GPFS and NFS
as on a local disk. Temporary files are never listed or loaded.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpc_train.checkpoint.hdf5_file import (
    check_complete,
    is_complete,
    read_checkpoint_file,
    read_meta,
    write_checkpoint_file,
)
from hpc_train.checkpoint.store import Checkpoint, CheckpointError, CheckpointStore
from hpc_train.processes import pid_alive

_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


# The meta key naming the run a checkpoint belongs to (hpc_train.checkpoint.identity).
RUN_KEY = "run_identity"


class HDF5CheckpointStore(CheckpointStore):
    """Checkpoints of one run in `directory`, each an HDF5 file; keeps the newest `keep_last`.

    With `run_identity`, pruning touches only that run's files (and files that name no run), so runs
    that share a folder never delete each other's checkpoints.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep_last: int | None = 3,
        rank: int = 0,
        sharded: bool = False,
        alignment: int = 4096,
        prefix: str = "ckpt",
        run_identity: str | None = None,
        read_only: bool = False,
    ) -> None:
        if keep_last is not None and keep_last < 1:
            raise CheckpointError(f"keep_last must be at least 1 or None (keep all), got {keep_last}")
        if alignment < 1 or not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise CheckpointError(f"bad checkpoint alignment {alignment} or prefix {prefix!r}")
        self.directory = Path(directory)
        self.keep_last = keep_last
        self.rank = rank
        self.sharded = sharded
        self.alignment = alignment
        self.prefix = prefix
        self.run_identity = run_identity
        self.read_only = read_only  # another run's folder, only read from: nothing there is removed or written
        self._owners: dict[str, tuple[int, bool, str | None]] = {}  # name -> (mtime_ns, loadable, run)
        suffix = rf"\.rank{rank}\.h5" if sharded else r"\.h5"
        self._name_re = re.compile(rf"{re.escape(prefix)}-(\d{{9,}}){suffix}")
        self._pointer = self.directory / (f"latest.rank{rank}" if sharded else "latest")
        self._tmp_re = re.compile(
            rf"(?:{re.escape(prefix)}-\d{{9,}}{suffix}|{re.escape(self._pointer.name)})\.(.+)\.(\d+)\.tmp")
        if not read_only and (sharded or rank == 0):  # without sharding rank 0 owns the directory
            self._remove_stale_tmp()

    # -- the interface -------------------------------------------------------------------------

    def save(self, state: Mapping[str, Any], *, step: int, meta: Mapping[str, Any] | None = None) -> Path:
        """Write `state` as the checkpoint of `step` atomically, point `latest` at it, prune old ones."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative int, got {step!r}")
        if self.read_only:
            raise CheckpointError(f"{self.directory}: opened read-only; nothing is saved there")
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(step)
        tmp = final.with_name(f"{final.name}.{_HOST}.{os.getpid()}.tmp")
        try:
            # Datasets start on `alignment` boundaries: whole filesystem blocks (4 KiB) or, set to
            # the stripe size, whole Lustre stripes.
            write_checkpoint_file(tmp, state, step=step, meta=meta, alignment=self.alignment)
            _fsync_path(tmp)
            os.replace(tmp, final)
            _fsync_path(self.directory)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._write_pointer(final)
        if self.keep_last is not None:
            self.prune(self.keep_last, protect=final)
        return final

    def load(self, path: Path | None = None) -> Checkpoint | None:
        """Load `path`, or else the newest valid checkpoint, skipping broken ones with a warning."""
        if path is not None:
            return read_checkpoint_file(Path(path))
        for candidate in self._newest_first():
            try:
                return read_checkpoint_file(candidate)
            except CheckpointError as e:
                _warn(f"skipping checkpoint: {e}")
        return None

    def latest(self) -> Path | None:
        """The newest complete checkpoint; the `latest` pointer is trusted when it names one."""
        for candidate in self._newest_first():
            try:
                check_complete(candidate)
                return candidate
            except CheckpointError as e:
                _warn(f"skipping checkpoint: {e}")
        return None

    def list(self) -> builtins.list[Path]:
        """All complete checkpoints, oldest first (data checksums are checked on load)."""
        return [p for p in reversed(self._newest_first()) if is_complete(p)]

    def steps(self) -> builtins.list[int]:
        """Steps of all complete checkpoints, oldest first."""
        return [step for p in self.list() if (step := self._step_of(p)) is not None]

    def prune(self, keep_last: int, *, protect: Path | None = None) -> builtins.list[Path]:
        """Remove this run's complete checkpoints but the newest `keep_last`; return the removed paths.

        Only complete files count, so an unreadable newer file never costs the newest good one;
        unreadable files themselves are left for a person to look at (loading skips them). Files of
        another run (another `run_identity` in their meta) are never touched.
        """
        if keep_last < 1:
            raise CheckpointError(f"keep_last must be at least 1, got {keep_last}")
        candidates = self._scan()
        if len(candidates) <= keep_last:
            return []  # nothing to remove, whoever owns them: no file needs opening
        ours = []
        for path in candidates:
            loadable, owner = self._owner_of(path)
            if loadable and (self.run_identity is None or owner is None or owner == self.run_identity):
                ours.append(path)
        removed = [p for p in ours[:-keep_last] if p != protect]  # never the file just written
        for p in removed:
            p.unlink(missing_ok=True)
        if removed:
            _fsync_path(self.directory)
        return removed

    def _owner_of(self, path: Path) -> tuple[bool, str | None]:
        """(whether the file loads as a checkpoint, the run it names), cached by name and mtime: a save
        prunes after every write, and each answer costs opening an HDF5 file."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return False, None
        cached = self._owners.get(path.name)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        try:
            owner = read_meta(path).get(RUN_KEY)
            answer = (True, None if owner is None else str(owner))
        except CheckpointError:
            answer = (False, None)
        self._owners[path.name] = (stamp, *answer)
        return answer

    # -- files ---------------------------------------------------------------------------------

    def path_for(self, step: int) -> Path:
        """``<prefix>-<step>.h5`` (``.rank<r>.h5`` when sharded) in the store's directory."""
        rank = f".rank{self.rank}" if self.sharded else ""
        return self.directory / f"{self.prefix}-{step:09d}{rank}.h5"

    def _step_of(self, path: Path) -> int | None:
        m = self._name_re.fullmatch(path.name)
        return int(m.group(1)) if m else None

    def _scan(self) -> builtins.list[Path]:
        """Final-named checkpoint files of this store (never `*.tmp`), oldest step first."""
        if not self.directory.is_dir():
            return []
        found = [(s, self.directory / n) for n in os.listdir(self.directory)
                 if (s := self._step_of(Path(n))) is not None]
        return [p for _, p in sorted(found)]

    def _newest_first(self) -> builtins.list[Path]:
        # The pointer counts too: on NFS another node's directory listing can lag behind a file
        # that opening by name already sees (close-to-open consistency).
        paths = set(self._scan())
        pointed = self._read_pointer()
        if pointed is not None and pointed.is_file():
            paths.add(pointed)
        return sorted(paths, key=lambda p: self._step_of(p) or 0, reverse=True)

    def _read_pointer(self) -> Path | None:
        try:
            name = self._pointer.read_text().strip()
        except OSError:
            return None
        if "/" in name or self._step_of(Path(name)) is None:
            return None
        return self.directory / name

    def _write_pointer(self, target: Path) -> None:
        tmp = self._pointer.with_name(f"{self._pointer.name}.{_HOST}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(target.name + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._pointer)
            _fsync_path(self.directory)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _remove_stale_tmp(self) -> None:
        """Remove temporary files left by writers that died; spare those of live local writers."""
        if not self.directory.is_dir():
            return
        for name in os.listdir(self.directory):
            m = self._tmp_re.fullmatch(name)
            if m and not (m.group(1) == _HOST and pid_alive(int(m.group(2)))):
                (self.directory / name).unlink(missing_ok=True)


# -- filesystem ----------------------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    """fsync a file or directory by path (a directory fsync makes a rename durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    except OSError as e:  # some network filesystems refuse fsync on directories
        if e.errno not in (errno.EINVAL, errno.ENOTSUP) or not path.is_dir():
            raise
    finally:
        os.close(fd)




def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)

