"""The job registry: one SQLite database under $HPC_TRAIN_HOME that outlives the login shell.

WAL journal on a local disk; on a network filesystem (an NFS home shared by several login nodes)
WAL's shared memory is not shared between hosts, so the registry uses the rollback journal there.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_train.errors import JobNotFound, RegistryError
from hpc_train.filesystems import NETWORK_FILESYSTEMS, network_filesystem
from hpc_train.status import JobStatus

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,            -- job | sweep | pipeline | batch
    executor TEXT NOT NULL,        -- local | slurm | sbatch | none
    scheduler_id TEXT,             -- SLURM job id ("123", "123_4") or local pid
    run_dir TEXT NOT NULL,
    status TEXT NOT NULL,
    parent TEXT,                   -- the sweep/pipeline/batch this job belongs to
    created REAL NOT NULL,
    updated REAL NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs(parent);
"""


def default_home() -> Path:
    """$HPC_TRAIN_HOME, else ~/.hpc-train."""
    return Path(os.environ.get("HPC_TRAIN_HOME") or Path.home() / ".hpc-train")


@dataclass
class JobRecord:
    """One row of the registry."""

    id: str
    name: str
    kind: str
    executor: str
    scheduler_id: str | None
    run_dir: str
    status: JobStatus
    parent: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form used by `--json` output."""
        return {"id": self.id, "name": self.name, "kind": self.kind, "executor": self.executor,
                "scheduler_id": self.scheduler_id, "run_dir": self.run_dir, "status": self.status.value,
                "parent": self.parent, "created": self.created, "updated": self.updated}


# words in SQLite's message -> what to tell the user (else: check the folder is writable and not full)
_SQLITE_HINTS = {
    "database is locked": "another hpc-train process held the registry for 30 s; try again, and on a network "
                          "filesystem whose locks do not work, use a folder on a local disk",
    "readonly database": "the registry file is read-only for you",
    "disk I/O error": "the filesystem failed a read or write (a network filesystem that went away?)",
}
# a marker in the registry folder: the network-filesystem warning was shown once already
_NOTED_MARKER = ".network-filesystem-noted"


class JobRegistry:
    """Jobs by id. Safe for several processes (busy timeout; WAL on local disks, rollback journal
    on network filesystems). A damaged database is a RegistryError naming the file and the fix."""

    def __init__(self, home: str | Path | None = None, *, mounts_text: str | None = None) -> None:
        """mounts_text: a /proc/mounts text to decide the journal mode from (default: the real one)."""
        self.home = Path(home) if home is not None else default_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create the registry folder {self.home}: {exc.strerror}; "
                                "HINT: set HPC_TRAIN_HOME (or --home) to a writable folder") from None
        self.path = self.home / "registry.db"
        self.journal_mode = self._choose_journal_mode(mounts_text)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _choose_journal_mode(self, mounts_text: str | None) -> str:
        mount = network_filesystem(self.home, mounts_text)
        if mount is None:
            return "WAL"
        marker = self.home / _NOTED_MARKER
        level = logging.INFO if marker.exists() else logging.WARNING
        log.log(level, "the job registry %s is on %s (%s, mounted at %s): using SQLite's rollback journal, "
                "since WAL is unsafe when several hosts share the file; set HPC_TRAIN_HOME to a folder on a "
                "local disk for a faster registry (this is said once)",
                self.path, NETWORK_FILESYSTEMS[mount.fstype], mount.fstype, mount.point)
        marker.touch(exist_ok=True)
        return "DELETE"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            db.execute(f"PRAGMA journal_mode={self.journal_mode}")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if type(exc) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise  # IntegrityError and friends are bugs, not a broken file
            raise self._unusable(exc) from None
        finally:
            db.close()

    def _unusable(self, exc: sqlite3.Error) -> RegistryError:
        if type(exc) is sqlite3.DatabaseError:  # "file is not a database", "disk image is malformed"
            return RegistryError(
                f"the job registry {self.path} is damaged ({exc}); HINT: move it aside "
                f"(mv {self.path} {self.path}.broken) and hpc-train starts an empty registry: running jobs "
                "go on and their run directories stay, but hpc-train no longer lists them; "
                "or set HPC_TRAIN_HOME (or --home) to another folder")
        hint = next((h for words, h in _SQLITE_HINTS.items() if words in str(exc)),
                    f"check that {self.home} is writable and not full")
        return RegistryError(f"cannot use the job registry {self.path}: {exc}; HINT: {hint}, "
                             "or set HPC_TRAIN_HOME (or --home) to another folder")

    @staticmethod
    def new_id() -> str:
        """A short random id that reads well on a command line."""
        return secrets.token_hex(4)

    def add(self, record: JobRecord) -> JobRecord:
        with self._connect() as db:
            db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)", (
                record.id, record.name, record.kind, record.executor, record.scheduler_id, record.run_dir,
                record.status.value, record.parent, record.created, record.updated, json.dumps(record.extra)))
        return record

    def update(self, job_id: str, *, status: JobStatus | None = None, scheduler_id: str | None = None,
               extra: dict[str, Any] | None = None) -> None:
        """Change a job's status, scheduler id or extra fields (merged)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise JobNotFound(f"no job {job_id!r} in {self.path}")
            merged = {**json.loads(row["extra"]), **(extra or {})}
            db.execute("UPDATE jobs SET status=?, scheduler_id=?, extra=?, updated=? WHERE id=?", (
                (status or JobStatus(row["status"])).value, scheduler_id or row["scheduler_id"],
                json.dumps(merged), time.time(), job_id))
            db.execute("COMMIT")

    def update_statuses(self, statuses: dict[str, JobStatus]) -> None:
        """Store many jobs' new statuses in one transaction (what `status` of a big array needs)."""
        if not statuses:
            return
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE jobs SET status=?, updated=? WHERE id=?",
                           [(status.value, now, job_id) for job_id, status in statuses.items()])
            db.execute("COMMIT")

    def get(self, job_id: str) -> JobRecord:
        """The job with this id (a unique prefix is enough); JobNotFound otherwise."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE id LIKE ? ORDER BY created", (job_id + "%",)).fetchall()
        exact = [r for r in rows if r["id"] == job_id]
        if exact:
            return _record(exact[0])
        if len(rows) == 1 and job_id:
            return _record(rows[0])
        if not rows:
            raise JobNotFound(f"no job {job_id!r} in the registry {self.path}; `hpc-train list` shows the jobs")
        raise JobNotFound(f"job id prefix {job_id!r} is ambiguous: " + ", ".join(r["id"] for r in rows))

    def children(self, parent: str) -> list[JobRecord]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE parent=? ORDER BY created, id", (parent,)).fetchall()
        return [_record(r) for r in rows]

    def list(self, limit: int | None = None, top_level_only: bool = True) -> list[JobRecord]:
        query = "SELECT * FROM jobs" + (" WHERE parent IS NULL" if top_level_only else "")
        query += " ORDER BY created DESC"
        if limit:
            query += f" LIMIT {int(limit)}"
        with self._connect() as db:
            return [_record(r) for r in db.execute(query).fetchall()]


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(id=row["id"], name=row["name"], kind=row["kind"], executor=row["executor"],
                     scheduler_id=row["scheduler_id"], run_dir=row["run_dir"], status=JobStatus(row["status"]),
                     parent=row["parent"], created=row["created"], updated=row["updated"],
                     extra=json.loads(row["extra"]))
