"""Job states from SLURM accounting: one sacct call for any number of jobs and array tasks."""

from __future__ import annotations

import re
from collections.abc import Iterable

from hpc_train.commands import run_command
from hpc_train.status import JobStatus, from_slurm

_ARRAY_PENDING = re.compile(r"(\d+)_\[(.+)\]")


def base_job_id(job_id: str) -> str:
    """'123_4' -> '123'; '123' -> '123'."""
    return job_id.split("_", 1)[0]


def query_states(job_ids: Iterable[str], *, timeout: float = 60.0) -> dict[str, JobStatus]:
    """States of the given SLURM job ids ('123' or '123_4') in one sacct call; unknown ids are absent."""
    wanted = sorted(set(job_ids))
    if not wanted:
        return {}
    bases = sorted({base_job_id(j) for j in wanted}, key=int)
    result = run_command(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(bases)],
        timeout=timeout, retries=2)
    return parse_sacct(result.stdout, wanted)


def parse_sacct(text: str, wanted: Iterable[str]) -> dict[str, JobStatus]:
    """Parse `sacct -X -n -P -o JobID,State` output; pending array ranges are expanded."""
    states: dict[str, JobStatus] = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job_id, state = line.split("|", 1)[:2]
        pending = _ARRAY_PENDING.fullmatch(job_id)
        if pending:
            for index in _expand_range(pending.group(2)):
                states.setdefault(f"{pending.group(1)}_{index}", from_slurm(state))
        else:
            states[job_id] = from_slurm(state)
    # When every task of a pending array is cancelled by its own id, sacct shows only the array's
    # own line ('123', not '123_[0-4]'): its state is then that of each task it lists no line for.
    found = {j: states.get(j) or states.get(base_job_id(j)) for j in wanted}
    return {j: state for j, state in found.items() if state is not None}


def _expand_range(text: str) -> list[int]:
    """'0-5%2' | '1,3,5-7' -> indices."""
    indices: list[int] = []
    for part in text.split("%", 1)[0].split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            indices.extend(range(int(low), int(high) + 1))
        elif part:
            indices.append(int(part))
    return indices
