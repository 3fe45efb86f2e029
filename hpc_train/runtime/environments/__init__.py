"""Where this process sits in a job: one ClusterEnvironment per launcher, picked by a table."""

from __future__ import annotations

from collections.abc import Mapping

from hpc_train.runtime.environments.base import ClusterEnvironment, resolve_environ
from hpc_train.runtime.environments.openmpi import OpenMPIEnvironment
from hpc_train.runtime.environments.single import SingleProcessEnvironment
from hpc_train.runtime.environments.slurm import SlurmEnvironment, expand_nodelist, first_host
from hpc_train.runtime.environments.torchrun import TorchrunEnvironment

# First match wins. torchrun before SLURM: torchrun inside an srun step sets its own ranks.
# SLURM before OpenMPI: srun --mpi=pmix sets both, and SLURM's node list locates rank 0.
DETECTION_ORDER: tuple[type[ClusterEnvironment], ...] = (
    TorchrunEnvironment,
    SlurmEnvironment,
    OpenMPIEnvironment,
    SingleProcessEnvironment,
)


def detect_environment(environ: Mapping[str, str] | None = None) -> ClusterEnvironment:
    """The first environment in DETECTION_ORDER whose launcher variables are present."""
    env = resolve_environ(environ)
    for cls in DETECTION_ORDER:
        if cls.detect(env):
            return cls(env)
    raise AssertionError("SingleProcessEnvironment always matches")  # pragma: no cover


__all__ = [
    "DETECTION_ORDER",
    "ClusterEnvironment",
    "OpenMPIEnvironment",
    "SingleProcessEnvironment",
    "SlurmEnvironment",
    "TorchrunEnvironment",
    "detect_environment",
    "expand_nodelist",
    "first_host",
]
