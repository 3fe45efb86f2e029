"""The registry is robust: a damaged registry.db is one message naming the file and the fix (exit 2,
no traceback) from every verb that reads it, and on a network filesystem the registry keeps off
SQLite's WAL journal. Network mounts are faked by handing the registry a mount-table text: the
decision is a pure function of /proc/mounts, and no NFS server runs here."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from hpc_train.cli.main import main
from hpc_train.errors import RegistryError
from hpc_train.filesystems import mount_of, network_filesystem, parse_mounts
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.status import JobStatus

LOCAL = "/dev/sda1 / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n"


def nfs_mounts(folder: Path, fstype: str = "nfs4") -> str:
    return LOCAL + f"fileserver:/export/home {folder} {fstype} rw,vers=4.2 0 0\n"


# -- which filesystem


def test_mount_lookup_takes_the_longest_mount_point() -> None:
    table = ("/dev/sda1 / ext4 rw 0 0\nserver:/home /home nfs4 rw 0 0\n"
             "/dev/nvme0n1 /home/scratch xfs rw 0 0\nmgs@o2ib:/lfs /lustre lustre rw 0 0\n"
             "srv:/my\\040files /mnt/my\\040files cifs rw 0 0\nsshfs#u@h: /mnt/remote fuse.sshfs rw 0 0\n")
    cases = {"/home/ada/.hpc-train": "nfs4", "/home/scratch/ada": "xfs", "/home": "nfs4",
             "/homework": "ext4", "/lustre/proj/ckpt": "lustre", "/mnt/my files/x": "cifs",
             "/mnt/remote/a": "fuse.sshfs", "/var/tmp": "ext4"}
    for path, fstype in cases.items():
        mount = mount_of(path, table)
        assert mount is not None and mount.fstype == fstype, (path, mount)
    assert network_filesystem("/home/scratch/ada", table) is None
    assert network_filesystem("/homework", table) is None
    assert network_filesystem("/mnt/my files/x", table).point == "/mnt/my files"  # type: ignore[union-attr]
    assert parse_mounts("garbage\n\n") == []


def test_the_real_mount_table_is_read() -> None:
    assert mount_of("/") is not None  # /proc/mounts exists here (Linux)


# -- journal mode


def on_disk_journal_mode(path: Path) -> str:
    """What a fresh connection finds: WAL is recorded in the file, the rollback journal is the default."""
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    finally:
        db.close()


def test_local_disk_uses_wal(tmp_path: Path) -> None:
    registry = JobRegistry(tmp_path / "home", mounts_text=LOCAL)
    assert registry.journal_mode == "WAL" and on_disk_journal_mode(registry.path) == "wal"


@pytest.mark.parametrize("fstype", ["nfs4", "nfs", "lustre", "gpfs", "beegfs", "cifs"])
def test_network_filesystem_uses_the_rollback_journal_and_says_so_once(
        fstype: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "home"
    with caplog.at_level(logging.INFO, logger="hpc_train.registry"):
        registry = JobRegistry(home, mounts_text=nfs_mounts(tmp_path, fstype))
        registry.add(JobRecord(id="a1", name="n", kind="job", executor="local", scheduler_id=None,
                               run_dir=str(tmp_path), status=JobStatus.PENDING))
        JobRegistry(home, mounts_text=nfs_mounts(tmp_path, fstype)).get("a1")
    assert on_disk_journal_mode(registry.path) == "delete"
    assert not Path(f"{registry.path}-wal").exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    text = warnings[0].getMessage()
    assert str(registry.path) in text and fstype in text and "HPC_TRAIN_HOME" in text and "WAL" in text
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]


def test_a_wal_registry_moved_onto_nfs_leaves_wal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    JobRegistry(home, mounts_text=LOCAL)
    assert on_disk_journal_mode(home / "registry.db") == "wal"
    JobRegistry(home, mounts_text=nfs_mounts(tmp_path)).list()
    assert on_disk_journal_mode(home / "registry.db") == "delete"


# -- a damaged registry


def garbage(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "registry.db"
    path.write_bytes(b"this is not a database, a sync tool left it half-written\n" * 200)
    return path


def malformed(home: Path) -> Path:
    """A real registry whose pages after the header were overwritten (a torn copy)."""
    registry = JobRegistry(home, mounts_text=LOCAL)
    for n in range(200):
        registry.add(JobRecord(id=f"j{n:04d}", name="n" * 50, kind="job", executor="local", scheduler_id=None,
                               run_dir="/tmp/x" * 20, status=JobStatus.COMPLETED))
    db = sqlite3.connect(registry.path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    with registry.path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(8192))
    return registry.path


@pytest.mark.parametrize("damage", [garbage, malformed])
def test_damaged_registry_is_a_registry_error(damage: object, tmp_path: Path) -> None:
    path = damage(tmp_path / "home")  # type: ignore[operator]
    with pytest.raises(RegistryError) as error:
        JobRegistry(tmp_path / "home", mounts_text=LOCAL).list()
    message = str(error.value)
    assert message.startswith(f"the job registry {path} is damaged")
    assert f"mv {path} {path}.broken" in message and "HPC_TRAIN_HOME" in message


def spec(folder: Path, sweep: bool = False) -> str:
    path = folder / ("sweep.yaml" if sweep else "job.yaml")
    path.write_text("name: t\nmodel: {type: logistic_regression}\n"
                    + ("sweep: {param_space: {C: [0.1, 1.0]}}\n" if sweep else ""))
    return str(path)


def pipeline(folder: Path) -> str:
    (folder / "a.py").write_text("print('a')\n")
    path = folder / "pipe.yaml"
    path.write_text("stages:\n  - {stage: a, script: a.py}\n")
    return str(path)


VERBS = {
    "submit": lambda f: ["submit", spec(f), "--executor", "local"],
    "render --dependency": lambda f: ["render", spec(f), "-o", str(f / "out"), "--dependency", "afterok:ab12"],
    "status": lambda f: ["status"],
    "status ID": lambda f: ["status", "ab12"],
    "wait": lambda f: ["wait", "ab12", "--timeout", "1"],
    "results": lambda f: ["results", "ab12"],
    "logs": lambda f: ["logs", "ab12"],
    "list": lambda f: ["list"],
    "cancel": lambda f: ["cancel", "ab12"],
    "monitor": lambda f: ["monitor", "ab12", "--once"],
    "plot": lambda f: ["plot", "ab12"],
    "sweep": lambda f: ["sweep", spec(f, sweep=True), "--executor", "local"],
    "best": lambda f: ["best", "ab12"],
    "pipeline": lambda f: ["pipeline", pipeline(f), "--executor", "local"],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_reports_a_damaged_registry_in_one_message(
        verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = garbage(tmp_path / "home")
    monkeypatch.setenv("HPC_TRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(VERBS[verb](tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hpc-train: error: the job registry {path} is damaged"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert path.read_bytes().startswith(b"this is not a database")  # left alone for the user to look at


def test_damaged_registry_through_the_console_script(tmp_path: Path) -> None:
    path = garbage(tmp_path / "home")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HPC_TRAIN_HOME": str(tmp_path / "home")}
    proc = subprocess.run([str(Path(sys.executable).parent / "hpc-train"), "list"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"hpc-train: error: the job registry {path} is damaged")
    assert "Traceback" not in proc.stderr


def test_unwritable_registry_folder_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RegistryError, match="cannot create the registry folder .*HPC_TRAIN_HOME"):
        JobRegistry(blocker / "home")



@pytest.mark.parametrize(("sqlite_message", "hint"), [
    ("database is locked", "another hpc-train process held the registry for 30 s"),
    ("attempt to write a readonly database", "the registry file is read-only for you"),
    ("disk I/O error", "a network filesystem that went away?"),
    ("unable to open database file", "is writable and not full"),
])
def test_sqlite_failures_are_told_with_a_hint(sqlite_message: str, hint: str, tmp_path: Path) -> None:
    # the mapping from SQLite's words to a hint; a 30-s lock or a failing disk is not staged here
    registry = JobRegistry(tmp_path / "home", mounts_text=LOCAL)
    error = registry._unusable(sqlite3.OperationalError(sqlite_message))
    assert str(error).startswith(f"cannot use the job registry {registry.path}: {sqlite_message}; HINT: ")
    assert hint in str(error) and str(error).endswith("or set HPC_TRAIN_HOME (or --home) to another folder")
