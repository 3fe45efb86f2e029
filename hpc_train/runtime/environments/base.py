"""The ClusterEnvironment interface: who am I in the job, and where is rank 0."""

from __future__ import annotations

import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping

# Overrides that any launcher may set; HPC_TRAIN_* wins over the torch convention.
MAIN_ADDRESS_VARS = ("HPC_TRAIN_MAIN_ADDR", "MASTER_ADDR")
MAIN_PORT_VARS = ("HPC_TRAIN_MAIN_PORT", "MASTER_PORT")
# Ports derived from a job id land in [PORT_BASE, PORT_BASE + PORT_SPAN): below Linux's ephemeral range.
PORT_BASE = 10000
PORT_SPAN = 20000


class ClusterEnvironment(ABC):
    """Rank, world size and rendezvous address of this process, read from the launcher's variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    @staticmethod
    @abstractmethod
    def detect(environ: Mapping[str, str] | None = None) -> bool:
        """True when this process was started by this kind of launcher."""

    @property
    @abstractmethod
    def world_size(self) -> int:
        """Number of processes in the job."""

    @property
    @abstractmethod
    def global_rank(self) -> int:
        """This process's rank among all processes."""

    @property
    @abstractmethod
    def local_rank(self) -> int:
        """This process's rank among the processes on its node."""

    @property
    @abstractmethod
    def node_rank(self) -> int:
        """Index of this process's node."""

    @property
    @abstractmethod
    def main_address(self) -> str:
        """Host name or address of rank 0, where the rendezvous listens."""

    @property
    @abstractmethod
    def main_port(self) -> int:
        """TCP port of the rendezvous on the main address."""

    @property
    def name(self) -> str:
        """Short name of the launcher, for logs and results."""
        return type(self).__name__.removesuffix("Environment").lower()

    def describe(self) -> dict[str, object]:
        """All fields as a plain dict, for logs and results."""
        return {"environment": self.name, "world_size": self.world_size, "global_rank": self.global_rank,
                "local_rank": self.local_rank, "node_rank": self.node_rank,
                "main_address": self.main_address, "main_port": self.main_port}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "environment")
        return f"{type(self).__name__}({fields})"

    # -- helpers for implementations -------------------------------------------------------------

    def _int(self, name: str, default: int | None = None) -> int:
        value = self.environ.get(name)
        if value is None or value == "":
            if default is None:
                raise KeyError(f"environment variable {name} is not set")
            return default
        return int(value)

    def _override(self, names: tuple[str, ...]) -> str | None:
        for name in names:
            value = self.environ.get(name)
            if value:
                return value
        return None


def resolve_environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """The given mapping, or the process environment."""
    return os.environ if environ is None else environ


def port_from_key(key: str) -> int:
    """A deterministic port for a job: every rank of the same job computes the same one."""
    number = int(key) if key.isdigit() else zlib.crc32(key.encode())
    return PORT_BASE + number % PORT_SPAN
