"""Command lines that start N local ranks under OpenMPI's mpirun (pure: nothing is run here)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

# Variables every rank needs from the launching shell; mpirun does not forward the environment.
FORWARDED_VARS = ("PYTHONPATH", "OMP_NUM_THREADS", "PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV",
                  "HPC_TRAIN_MAIN_ADDR", "HPC_TRAIN_MAIN_PORT", "MASTER_ADDR", "MASTER_PORT", "CI")
_ROOT_VARS = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM")


def mpirun_command(
    np: int,
    argv: Sequence[str],
    *,
    mpirun: str = "mpirun",
    forward: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    euid: int | None = None,
) -> list[str]:
    """`mpirun` argv for np local ranks running argv: oversubscribed, unbound, with env vars forwarded."""
    if np < 1:
        raise ValueError(f"np must be at least 1, got {np}")
    if not argv:
        raise ValueError("argv must name the program each rank runs")
    env = os.environ if environ is None else environ
    uid = os.geteuid() if euid is None else euid
    cmd = [mpirun]
    # OpenMPI refuses root unless told; the OMPI_ALLOW_RUN_AS_ROOT pair is its documented alternative.
    root_allowed_by_env = all(env.get(name) == "1" for name in _ROOT_VARS)
    if uid == 0 and not root_allowed_by_env:
        cmd.append("--allow-run-as-root")
    # --oversubscribe: more ranks than cores is fine for tests; --bind-to none: on 2 cores, binding
    # each rank to one core starves torch's intra-op threads.
    cmd += ["--oversubscribe", "--bind-to", "none", "-np", str(np)]
    names = dict.fromkeys([*FORWARDED_VARS, *forward])
    for name in names:
        if name in env:
            cmd += ["-x", name]
    return cmd + [str(a) for a in argv]
