"""Ranks started by OpenMPI's `mpirun` (or by srun with PMIx, when SLURM variables are absent)."""

from __future__ import annotations

from collections.abc import Mapping

from hpc_train.runtime.environments.base import (
    MAIN_ADDRESS_VARS,
    MAIN_PORT_VARS,
    ClusterEnvironment,
    port_from_key,
    resolve_environ,
)


class OpenMPIEnvironment(ClusterEnvironment):
    """An OpenMPI rank: OMPI_COMM_WORLD_SIZE / _RANK / _LOCAL_RANK / _LOCAL_SIZE."""

    @staticmethod
    def detect(environ: Mapping[str, str] | None = None) -> bool:
        """True under mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE and _RANK for every rank)."""
        env = resolve_environ(environ)
        return "OMPI_COMM_WORLD_SIZE" in env and "OMPI_COMM_WORLD_RANK" in env

    @property
    def world_size(self) -> int:
        return self._int("OMPI_COMM_WORLD_SIZE")

    @property
    def global_rank(self) -> int:
        return self._int("OMPI_COMM_WORLD_RANK")

    @property
    def local_rank(self) -> int:
        return self._int("OMPI_COMM_WORLD_LOCAL_RANK", 0)

    @property
    def node_rank(self) -> int:
        # OMPI_COMM_WORLD_NODE_RANK is NOT a node index: OpenMPI defines it as the rank among the
        # processes on this node across all jobs (rank 1 on a single node gets NODE_RANK=1).
        if self.environ.get("OMPI_MCA_orte_num_nodes") == "1":
            return 0
        local_size = self._int("OMPI_COMM_WORLD_LOCAL_SIZE", 0)
        # Exact for mpirun's default by-slot mapping with the same number of ranks on every node.
        return self.global_rank // local_size if local_size > 0 else 0

    @property
    def main_address(self) -> str:
        return self._override(MAIN_ADDRESS_VARS) or "127.0.0.1"

    @property
    def main_port(self) -> int:
        override = self._override(MAIN_PORT_VARS)
        if override:
            return int(override)
        # Every rank of one mpirun shares its job id, and two concurrent mpiruns get different ones.
        key = (self.environ.get("OMPI_MCA_ess_base_jobid") or self.environ.get("PMIX_NAMESPACE")
               or self.environ.get("OMPI_MCA_orte_hnp_uri", "0").split(";")[0])
        return port_from_key(key)
