"""What `hpc-train doctor` is made of: a check's outcome, and what the checks look at.

A check is a small function of a DoctorContext returning an Outcome. The context runs each
external probe once (through hpc_train.commands.run_command, with a timeout) and caches it, so
several checks can read the same `sinfo` or `scontrol ping` answer.
"""

from __future__ import annotations

import enum
import functools
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpc_train.commands import CommandResult, run_command
from hpc_train.errors import CommandError, SchedulerUnavailable
from hpc_train.spec import JobSpec

SLURM_CLIENTS = ("sbatch", "squeue", "sacct", "scontrol", "sinfo", "srun", "scancel")
PROBE_TIMEOUT_S = 30.0


class Status(enum.Enum):
    """How a check came out. Only FAIL makes `doctor` exit non-zero."""

    OK = "ok"
    WARN = "warn"  # works, with a consequence worth knowing (a checkpoint folder on a local disk)
    SKIP = "skip"  # does not apply here (no GPU; Horovod not installed and not needed)
    FAIL = "fail"  # something this machine, or the spec, needs is missing or broken


SYMBOLS = {Status.OK: "✓", Status.WARN: "!", Status.SKIP: "-", Status.FAIL: "✗"}


@dataclass(frozen=True)
class Outcome:
    """One line of the report: what was found, and how to fix it when it is not ✓."""

    status: Status
    detail: str
    hint: str | None = None


def ok(detail: str) -> Outcome:
    return Outcome(Status.OK, detail)


def fail(detail: str, hint: str) -> Outcome:
    return Outcome(Status.FAIL, detail, hint)


def warn(detail: str, hint: str) -> Outcome:
    return Outcome(Status.WARN, detail, hint)


def skip(detail: str) -> Outcome:
    return Outcome(Status.SKIP, detail)


def needed(required: bool, detail: str, hint: str, absent: str) -> Outcome:
    """FAIL when the thing is required (by the spec), else SKIP saying it is absent and not needed."""
    return fail(detail, hint) if required else skip(f"{detail} ({absent})")


class DoctorContext:
    """The spec being checked (if any), the folders that matter, and cached probes of this machine."""

    def __init__(self, spec: JobSpec | None, *, home: Path, checkpoint_dir: Path) -> None:
        self.spec = spec
        self.home = home
        self.checkpoint_dir = checkpoint_dir

    def probe(self, argv: Sequence[str], timeout: float = PROBE_TIMEOUT_S) -> CommandResult | str:
        """Run a command once through the choke point: its result, or why it could not run (a string)."""
        return _probe(tuple(argv), timeout)

    @functools.cached_property
    def slurm_clients_missing(self) -> list[str]:
        return [name for name in SLURM_CLIENTS if shutil.which(name) is None]

    @functools.cached_property
    def controller_said(self) -> str | None:
        """None when `scontrol ping` finds slurmctld UP; else what it said."""
        from hpc_train.scheduler.slurm import ping_controller

        try:
            return ping_controller()
        except (CommandError, SchedulerUnavailable) as exc:
            return str(exc)

    @property
    def slurm_usable(self) -> bool:
        return not self.slurm_clients_missing and self.controller_said is None

    @property
    def spec_needs_slurm(self) -> bool:
        """A spec that names a partition, account, QOS or constraint, or asks for several nodes, needs SLURM."""
        if self.spec is None:
            return False
        r = self.spec.resources
        return bool(r.partition or r.account or r.qos or r.constraint or r.nodes > 1)

    def python_probe(self, code: str, timeout: float = 120.0) -> CommandResult | str:
        """Run CODE in a fresh interpreter (this one's): imports that may hang or init MPI/CUDA stay out of here."""
        return self.probe([sys.executable, "-c", code], timeout)


@functools.lru_cache(maxsize=64)
def _probe(argv: tuple[str, ...], timeout: float) -> CommandResult | str:
    try:
        return run_command(list(argv), timeout=timeout, check=False)
    except (CommandError, SchedulerUnavailable) as exc:
        return str(exc)


def said(result: CommandResult) -> str:
    """A command's output as one line (stdout and stderr)."""
    return "; ".join(line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip())
