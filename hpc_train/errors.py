"""Errors a user can fix. The CLI prints them in one message and exits 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MISSING: Any = object()


class UserError(Exception):
    """A mistake the user can fix: bad input, a missing file, an unreachable scheduler."""

    exit_code = 2


class SpecError(UserError):
    """A job spec that cannot be accepted: names the file, key path, bad value and what is allowed."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        value: Any = _MISSING,
        allowed: Iterable[Any] | str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.value = value
        self.allowed = allowed
        self.hint = hint
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.file or "<spec>"
        if self.key:
            where += f": {self.key}"
        parts = [f"{where}: {self.reason}"]
        if self.value is not _MISSING:
            parts.append(f"got {self.value!r}")
        if self.allowed is not None:
            allowed = self.allowed if isinstance(self.allowed, str) else ", ".join(map(str, self.allowed))
            parts.append(f"allowed: {allowed}")
        if self.hint:
            parts.append(f"HINT: {self.hint}")
        return "; ".join(parts)

    def with_file(self, file: str) -> SpecError:
        """The same error, naming the spec file it came from."""
        return SpecError(self.reason, file=file, key=self.key, value=self.value, allowed=self.allowed, hint=self.hint)


class CommandError(UserError):
    """An external command (sbatch, sacct, mpirun, ...) failed; quotes the argv and its stderr."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str, hint: str | None = None) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.hint = hint
        shown = " ".join(argv)
        what = "timed out" if returncode is None else f"exited {returncode}"
        msg = f"command `{shown}` {what}"
        if self.stderr:
            msg += f": {self.stderr}"
        if hint:
            msg += f"\nHINT: {hint}"
        super().__init__(msg)


class SchedulerUnavailable(UserError):
    """The scheduler cannot be reached (slurmctld down, commands missing)."""


class JobNotFound(UserError):
    """No job with that id in the registry."""


class RegistryError(UserError):
    """The job registry (SQLite under $HPC_TRAIN_HOME) is damaged or cannot be used."""
