"""One process, no launcher: a laptop, a CI box, `hpc-train run`."""

from __future__ import annotations

from collections.abc import Mapping

from hpc_train.runtime.environments.base import MAIN_ADDRESS_VARS, MAIN_PORT_VARS, ClusterEnvironment

DEFAULT_PORT = 29500


class SingleProcessEnvironment(ClusterEnvironment):
    """World of one: rank 0 on node 0; always detected, so it closes the detection table."""

    @staticmethod
    def detect(environ: Mapping[str, str] | None = None) -> bool:
        """Always true: the fallback when no launcher is found."""
        return True

    @property
    def world_size(self) -> int:
        return 1

    @property
    def global_rank(self) -> int:
        return 0

    @property
    def local_rank(self) -> int:
        return 0

    @property
    def node_rank(self) -> int:
        return 0

    @property
    def main_address(self) -> str:
        return self._override(MAIN_ADDRESS_VARS) or "127.0.0.1"

    @property
    def main_port(self) -> int:
        return int(self._override(MAIN_PORT_VARS) or DEFAULT_PORT)
