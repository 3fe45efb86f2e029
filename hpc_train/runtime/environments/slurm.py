"""Ranks started by `srun` inside a SLURM job step."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cached_property

from hpc_train.errors import UserError
from hpc_train.runtime.environments.base import (
    MAIN_ADDRESS_VARS,
    MAIN_PORT_VARS,
    ClusterEnvironment,
    port_from_key,
    resolve_environ,
)


class SlurmEnvironment(ClusterEnvironment):
    """A task of a SLURM job step: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID."""

    @staticmethod
    def detect(environ: Mapping[str, str] | None = None) -> bool:
        """Inside a step (not the batch script) and not an mpirun whose daemons srun started."""
        env = resolve_environ(environ)
        in_step = "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env)
        if not in_step or "SLURM_NTASKS" not in env:
            return False
        # mpirun inside an allocation starts its daemons with srun (one task per node), so the ranks
        # inherit the daemon step's SLURM_* variables; the MPI world then disagrees with SLURM_NTASKS.
        ompi_size = env.get("OMPI_COMM_WORLD_SIZE")
        return ompi_size is None or ompi_size == env["SLURM_NTASKS"]

    @property
    def world_size(self) -> int:
        return self._int("SLURM_NTASKS")

    @property
    def global_rank(self) -> int:
        return self._int("SLURM_PROCID")

    @property
    def local_rank(self) -> int:
        return self._int("SLURM_LOCALID", 0)

    @property
    def node_rank(self) -> int:
        return self._int("SLURM_NODEID", 0)

    @cached_property
    def main_address(self) -> str:
        override = self._override(MAIN_ADDRESS_VARS)
        if override:
            return override
        nodelist = self.environ.get("SLURM_STEP_NODELIST") or self.environ.get("SLURM_JOB_NODELIST")
        if not nodelist:
            raise UserError("SLURM_JOB_NODELIST is not set inside a SLURM step; cannot find rank 0's node\n"
                            "HINT: set HPC_TRAIN_MAIN_ADDR to the first node of the job")
        return first_host(nodelist)

    @property
    def main_port(self) -> int:
        override = self._override(MAIN_PORT_VARS)
        if override:
            return int(override)
        return port_from_key(self.environ.get("SLURM_JOB_ID") or self.environ.get("SLURM_JOBID") or "0")


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: `scontrol show hostnames`, else our own parser."""
    from hpc_train.commands import run_command
    from hpc_train.errors import CommandError, SchedulerUnavailable

    try:
        out = run_command(["scontrol", "show", "hostnames", nodelist], timeout=10).stdout.split()
    except (SchedulerUnavailable, CommandError):
        out = []
    return out[0] if out else expand_nodelist(nodelist)[0]


_GROUP = re.compile(r"([^,\[]*)(?:\[([^\]]*)\])?([^,\[]*)")


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM node list such as `gpu[01-03,07],login1` into host names (one bracket level)."""
    hosts: list[str] = []
    for part in _split_top_level(nodelist):
        match = _GROUP.fullmatch(part)
        if match is None or not part:
            raise UserError(f"cannot parse SLURM node list {nodelist!r}")
        prefix, ranges, suffix = match.groups()
        if ranges is None:
            hosts.append(prefix + suffix)
            continue
        for item in ranges.split(","):
            lo, _, hi = item.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            width = len(lo)
            hosts.extend(f"{prefix}{n:0{width}d}{suffix}" for n in range(int(lo), int(hi) + 1))
    return hosts


def _split_top_level(nodelist: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in nodelist:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p]
