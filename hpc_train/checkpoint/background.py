"""Checkpoint saves that run behind training: one writer thread, at most one save in flight.

The caller hands over a snapshot (a state tree that nothing else mutates: the trainer's state_dict()
is made of CPU clones) and goes on; the thread writes, checksums, fsyncs and renames it with the
store's own save(), so `latest` moves only once the file is durable. A SIGKILL during the write
leaves the previous checkpoint in place (write-temporary-then-rename). The next submit() and every
wait() join the save in flight first; an error of a background save is raised by the next of them.

A thread suffices: h5py holds its lock while it writes, but the writer spends most of its time in
calls that release the GIL (memory copies into HDF5, xxhash/crc32 of large buffers, fsync), and torch
releases it inside its kernels (bench/bench_async_checkpoint.py measures the overlap).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpc_train.checkpoint.store import CheckpointStore

log = logging.getLogger(__name__)


class BackgroundSaver:
    """Runs `store.save` in a writer thread; `waits` counts the joins that found a save still running."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.waits = 0  # times a caller had to wait for a save in flight
        self.waited_seconds = 0.0
        self.saved: list[Path] = []  # paths the background saves wrote, oldest first
        self._thread: threading.Thread | None = None
        self._step: int | None = None
        self._error: BaseException | None = None

    @property
    def in_flight(self) -> bool:
        """True while a background save is still writing."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, state: Mapping[str, Any], *, step: int, meta: Mapping[str, Any] | None = None) -> None:
        """Wait for the save in flight (raising its error), then start writing `state` in the background."""
        self.wait()
        self._step = step
        self._thread = threading.Thread(target=self._write, args=(state, step, meta),
                                        name=f"checkpoint-writer-{step}")
        # Not a daemon: an interpreter that exits (an uncaught exception included) joins it first.
        self._thread.start()

    def wait(self) -> Path | None:
        """Block until no save is in flight; raise the error of the last one if it failed. Returns its path."""
        thread = self._thread
        if thread is not None:
            if thread.is_alive():
                self.waits += 1
                log.info("waiting for the checkpoint of step %s still being written", self._step)
                started = time.perf_counter()
                thread.join()
                self.waited_seconds += time.perf_counter() - started
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self.saved[-1] if self.saved and thread is not None else None

    def _write(self, state: Mapping[str, Any], step: int, meta: Mapping[str, Any] | None) -> None:
        try:
            path = self.store.save(state, step=step, meta=meta)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread by the next wait()
            self._error = e
            return
        self.saved.append(path)
        log.info("checkpoint at step %d written in the background: %s", step, path)
