"""Ranks started by `torchrun` (torch.distributed.run / elastic launch)."""

from __future__ import annotations

from collections.abc import Mapping

from hpc_train.runtime.environments.base import ClusterEnvironment, resolve_environ

_REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class TorchrunEnvironment(ClusterEnvironment):
    """A torchrun worker: RANK, WORLD_SIZE, LOCAL_RANK, GROUP_RANK, MASTER_ADDR, MASTER_PORT."""

    @staticmethod
    def detect(environ: Mapping[str, str] | None = None) -> bool:
        """True when all of torchrun's rendezvous variables are set."""
        env = resolve_environ(environ)
        return all(name in env for name in _REQUIRED)

    @property
    def world_size(self) -> int:
        return self._int("WORLD_SIZE")

    @property
    def global_rank(self) -> int:
        return self._int("RANK")

    @property
    def local_rank(self) -> int:
        return self._int("LOCAL_RANK")

    @property
    def node_rank(self) -> int:
        return self._int("GROUP_RANK", self._int("NODE_RANK", 0))

    @property
    def main_address(self) -> str:
        return self.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        return self._int("MASTER_PORT")
