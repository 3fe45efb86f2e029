"""The one choke point for external commands (sbatch, squeue, sacct, scontrol, scancel, mpirun, srun).

Every call takes an argv list (never a shell string), has a timeout and bounded retries, and
fails with a CommandError that quotes the command and its stderr.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hpc_train.errors import CommandError, SchedulerUnavailable

log = logging.getLogger(__name__)

# Counts calls per program name; tests use it to prove that status is one sacct call.
CALL_COUNTS: dict[str, int] = {}


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_command(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    retries: int = 0,
    retry_on: Callable[[CommandResult], bool] | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    hint: Callable[[CommandResult], str | None] | None = None,
    input: str | None = None,
) -> CommandResult:
    """Run argv with a timeout; retry transient failures up to `retries` times with back-off."""
    args = [str(a) for a in argv]
    if shutil.which(args[0]) is None:
        raise SchedulerUnavailable(f"command `{args[0]}` not found on PATH (needed for `{' '.join(args)}')")
    full_env = {**os.environ, **env} if env is not None else None
    delay = 0.5
    for attempt in range(retries + 1):
        CALL_COUNTS[os.path.basename(args[0])] = CALL_COUNTS.get(os.path.basename(args[0]), 0) + 1
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env,
                                  input=input, check=False)
        except subprocess.TimeoutExpired as exc:
            if attempt < retries:
                log.warning("`%s` timed out after %ss, retrying", " ".join(args), timeout)
                time.sleep(delay)
                delay *= 2
                continue
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            raise CommandError(args, None, stderr) from None
        result = CommandResult(args, proc.returncode, proc.stdout, proc.stderr)
        if proc.returncode == 0 or not check:
            return result
        if attempt < retries and (retry_on is None or retry_on(result)):
            log.warning("`%s` failed (%s), retrying: %s", " ".join(args), proc.returncode, proc.stderr.strip())
            time.sleep(delay)
            delay *= 2
            continue
        raise CommandError(args, proc.returncode, proc.stderr or proc.stdout,
                           hint=hint(result) if hint else None)
    raise AssertionError("unreachable")  # pragma: no cover
