"""The scheduler interface: plan (a pure dry run), submit, statuses, cancel."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_train.registry import JobRecord
from hpc_train.render import RenderContext
from hpc_train.spec import JobSpec
from hpc_train.status import JobStatus


class PartialSubmission(Exception):
    """A many-job submission that stopped part-way: `ids` are the jobs the scheduler accepted (the first
    len(ids) plans, in order), `cause` is why the next one was not."""

    def __init__(self, ids: Sequence[str], cause: BaseException) -> None:
        super().__init__(f"{len(ids)} accepted, then: {cause}")
        self.ids = list(ids)
        self.cause = cause


@dataclass
class SubmissionPlan:
    """Exactly what would be submitted; printing it is `submit --dry-run`."""

    executor: str
    spec: JobSpec
    run_dir: Path
    context: RenderContext
    parameters: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    script: str | None = None
    argv: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A readable account of the plan: parameters, set-up lines, command or script."""
        import shlex

        lines = [f"executor: {self.executor}", f"run_dir: {self.run_dir}"]
        if self.parameters:
            lines.append("parameters:")
            lines += [f"  {key}: {value!r}" for key, value in sorted(self.parameters.items())]
        if self.setup:
            lines.append("setup:")
            lines += [f"  {line}" for line in self.setup]
        if self.argv:
            lines.append("submit: " + shlex.join(self.argv))
        if self.command:
            lines.append("command: " + shlex.join(self.command))
        if self.script is not None:
            lines += ["script:", self.script]
        return "\n".join(lines)


class Scheduler(ABC):
    """A place jobs run: SLURM, or this machine."""

    name: str = "base"

    @abstractmethod
    def plan(self, spec: JobSpec, context: RenderContext) -> SubmissionPlan:
        """Build the submission without side effects."""

    @abstractmethod
    def submit(self, plan: SubmissionPlan) -> str:
        """Submit one job; returns the scheduler's id for it."""

    def check(self, plan: SubmissionPlan) -> None:
        """Raise a UserError when the scheduler would refuse the plan, queueing nothing; default: no check."""

    def submit_array(self, plans: Sequence[SubmissionPlan], parallel: int | None = None) -> list[str]:
        """Submit many similar jobs; backends with arrays override this. A failure after some jobs were
        accepted raises PartialSubmission with their ids."""
        ids: list[str] = []
        try:
            for plan in plans:
                ids.append(self.submit(plan))
        except BaseException as exc:
            if ids:
                raise PartialSubmission(ids, exc) from exc
            raise
        return ids

    @abstractmethod
    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        """Current status of many jobs at once, keyed by record id."""

    @abstractmethod
    def cancel(self, record: JobRecord) -> None:
        """Stop a job."""

    def cancel_many(self, records: Sequence[JobRecord]) -> None:
        """Stop several jobs; backends that can in one command override this."""
        for record in records:
            self.cancel(record)
