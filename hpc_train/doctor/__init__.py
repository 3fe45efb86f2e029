"""`hpc-train doctor`: can this machine (and this cluster) run hpc-train jobs, and this spec?

run_doctor runs every check of hpc_train.doctor.checks.CHECKS and returns the report; a report
is healthy when no line failed (✗). Warnings (!) and skipped lines (-) never fail it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpc_train.doctor.base import SYMBOLS, DoctorContext, Outcome, Status
from hpc_train.doctor.checks import CHECKS
from hpc_train.errors import SpecError
from hpc_train.spec import JobSpec

__all__ = ["DoctorReport", "run_doctor"]


@dataclass(frozen=True)
class DoctorReport:
    """Every check's outcome, in order."""

    lines: list[tuple[str, Outcome]]
    spec: str | None = None

    @property
    def healthy(self) -> bool:
        return all(outcome.status != Status.FAIL for _, outcome in self.lines)

    def failed(self) -> list[str]:
        return [name for name, outcome in self.lines if outcome.status == Status.FAIL]

    def text(self) -> str:
        """One line per check: symbol, name, detail; a HINT line under each one that is not ✓."""
        out = []
        for name, outcome in self.lines:
            out.append(f"{SYMBOLS[outcome.status]} {name}: {outcome.detail}")
            if outcome.hint and outcome.status in (Status.FAIL, Status.WARN):
                out.append(f"    HINT: {outcome.hint}")
        failed = self.failed()
        out.append(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "no problems found")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.healthy,
            "spec": self.spec,
            "failed": self.failed(),
            "checks": [{"name": name, "status": o.status.value, "ok": o.status != Status.FAIL,
                        "detail": o.detail, "hint": o.hint} for name, o in self.lines],
        }


def run_doctor(spec: JobSpec | None, *, home: Path, checkpoint_dir: Path, spec_file: str | None = None,
               only: Sequence[str] = ()) -> DoctorReport:
    """Run the checks against this machine (and the spec's needs, when given).

    only: words; when given, just the checks whose name contains one of them (case-insensitive).
    """
    ctx = DoctorContext(spec, home=home, checkpoint_dir=checkpoint_dir)
    chosen = {name: check for name, check in CHECKS.items()
              if not only or any(word.lower() in name.lower() for word in only)}
    if not chosen:
        raise SpecError("no check has that name", file="command line", key="--check", value=list(only),
                        allowed=list(CHECKS))
    return DoctorReport([(name, check(ctx)) for name, check in chosen.items()], spec=spec_file)
