"""Which filesystem a folder sits on, from the kernel's mount table (/proc/mounts).

Network and parallel filesystems matter to hpc-train twice: SQLite's WAL journal needs shared
memory that hosts cannot share (so the registry must not use it there), and checkpoints or data
on a node-local disk are not visible to the other nodes of a job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MOUNTS_FILE = Path("/proc/mounts")

# filesystem type (as /proc/mounts names it) -> what it is; fuse filesystems appear as fuse.NAME
NETWORK_FILESYSTEMS: dict[str, str] = {
    "nfs": "NFS", "nfs4": "NFS",
    "lustre": "Lustre",
    "gpfs": "IBM Storage Scale (GPFS)",
    "beegfs": "BeeGFS",
    "cifs": "SMB/CIFS", "smb3": "SMB/CIFS", "smbfs": "SMB/CIFS",
    "ceph": "CephFS", "fuse.ceph": "CephFS", "fuse.ceph-fuse": "CephFS",
    "glusterfs": "GlusterFS", "fuse.glusterfs": "GlusterFS",
    "panfs": "Panasas PanFS",
    "pvfs2": "OrangeFS", "orangefs": "OrangeFS",
    "afs": "AFS", "openafs": "AFS",
    "gfs2": "GFS2", "ocfs2": "OCFS2",
    "fuse.sshfs": "SSHFS",
    "wekafs": "WekaFS",
    "9p": "9P",
}

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of the mount table."""

    source: str
    point: str
    fstype: str

    @property
    def is_network(self) -> bool:
        return self.fstype in NETWORK_FILESYSTEMS


def parse_mounts(text: str) -> list[Mount]:
    """The entries of a /proc/mounts text (spaces in paths arrive as octal escapes like \\040)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])
            mounts.append(Mount(fields[0], point, fields[2]))
    return mounts


def read_mounts() -> str:
    """The kernel's mount table; empty where there is none (not Linux)."""
    try:
        return MOUNTS_FILE.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def mount_of(path: str | Path, mounts_text: str | None = None) -> Mount | None:
    """The mount that holds PATH (the longest mount point above it; later mounts hide earlier ones)."""
    target = os.path.realpath(path)
    best: Mount | None = None
    for mount in parse_mounts(read_mounts() if mounts_text is None else mounts_text):
        point = mount.point.rstrip("/") or "/"
        inside = target == point or target.startswith(point if point == "/" else point + "/")
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def network_filesystem(path: str | Path, mounts_text: str | None = None) -> Mount | None:
    """The network or parallel filesystem mount holding PATH; None on a local disk (or unknown)."""
    mount = mount_of(path, mounts_text)
    return mount if mount is not None and mount.is_network else None
