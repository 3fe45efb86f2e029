"""The run directory: what a job writes and what the orchestrator, monitor and CLI read back.

Layout (all JSON is documented in README.md):
    spec.yaml        the resolved spec, every default filled in
    status.json      {"status", "updated", "host", "pid", "error", "traceback", "restarts", "last_fault"}
    metrics.jsonl    one line per epoch: epoch, step, loss, accuracy, val_loss, val_accuracy, lr, samples_per_s
    progress.json    {"fraction", "epoch", "epochs", "step", "total_steps", "steps_per_s", "started", "updated"}
    results.json     final metrics, sizes, duration, parameter digests
    resources.jsonl  resource samples (one file per rank: resources.rank<N>.jsonl)
    logs/            scheduler stdout/stderr
    checkpoints/     HDF5 checkpoints (unless checkpoint.dir points elsewhere)
    model.*          the trained model artifact
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hpc_train.status import JobStatus


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    """The JSON in path, or None when it is missing or unreadable (being replaced)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RunDirectory:
    """One job's run directory; rank 0 writes, everybody may read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._metrics_replay_checked = False

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- paths
    @property
    def spec_path(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def create(self) -> RunDirectory:
        """Make the directory and its logs folder."""
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    # -- writing (inside the job)
    def write_status(self, status: JobStatus, **extra: Any) -> None:
        """Record the job's own view of its state."""
        current = self.status_record() or {}
        current.update({"status": status.value, "updated": time.time(), "host": socket.gethostname(),
                        "pid": os.getpid(), **extra})
        write_json_atomic(self.path / "status.json", current)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one epoch's metrics as a JSON line; each epoch appears once.

        A run resumed from a checkpoint older than its last logged epoch (after a crash: no
        checkpoint at the stop) trains those epochs again, so the first append of a process drops
        the lines of its epoch and later ones before writing.
        """
        path = self.path / "metrics.jsonl"
        if not self._metrics_replay_checked and "epoch" in record:
            self._metrics_replay_checked = True
            logged = self.metrics()
            kept = [line for line in logged if int(line.get("epoch", 0)) < int(record["epoch"])]
            if len(kept) < len(logged):
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text("".join(json.dumps(line, default=float) + "\n" for line in kept))
                os.replace(tmp, path)
        with path.open("a") as handle:
            handle.write(json.dumps({"time": time.time(), **record}, default=float) + "\n")

    def write_progress(self, *, epoch: int, epochs: int, step: int, total_steps: int, started: float,
                       steps_per_s: float | None) -> None:
        """Record how far the job is and how fast it goes."""
        fraction = min(1.0, step / total_steps) if total_steps else 0.0
        write_json_atomic(self.path / "progress.json", {
            "fraction": round(fraction, 4), "epoch": epoch, "epochs": epochs, "step": step,
            "total_steps": total_steps, "steps_per_s": steps_per_s, "started": started, "updated": time.time()})

    def write_results(self, results: dict[str, Any]) -> None:
        write_json_atomic(self.path / "results.json", results)

    # -- reading (orchestrator, monitor, CLI)
    def status_record(self) -> dict[str, Any] | None:
        return read_json(self.path / "status.json")

    def progress(self) -> dict[str, Any] | None:
        return read_json(self.path / "progress.json")

    def results(self) -> dict[str, Any] | None:
        return read_json(self.path / "results.json")

    def metrics(self) -> list[dict[str, Any]]:
        """All metric lines written so far (a partly written last line is ignored)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def log_files(self) -> list[Path]:
        """Scheduler logs, oldest first."""
        if not self.logs.exists():
            return []
        return sorted((p for p in self.logs.iterdir() if p.is_file()), key=lambda p: (p.stat().st_mtime, p.name))
