"""Inside a pipeline stage's job: run `python SCRIPT ARGS...` in the pipeline's working directory.

The stage's run directory gets status.json like every job (so status and `hpc-train status` read
it the same way); a non-zero exit fails the job, which (on SLURM, through afterok) cancels the
stages after it.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hpc_train.rundir import RunDirectory
from hpc_train.status import JobStatus

STDERR_TAIL = 12


class StageFailed(RuntimeError):
    """A stage script exited non-zero."""


def run_stage(argv: Sequence[str], workdir: str, run_dir: str, *, index: int, total: int,
              pipeline_dir: str) -> int:
    """Run one stage's command; stdout passes through, stderr too (its last lines go to status.json)."""
    own = RunDirectory(run_dir).create()
    own.write_status(JobStatus.RUNNING, started=time.time(), argv=list(argv))
    env = {**os.environ, "HPC_TRAIN_RUN_DIR": run_dir, "HPC_TRAIN_PIPELINE_DIR": pipeline_dir}
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
    try:
        with subprocess.Popen(list(argv), cwd=workdir, env=env, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                sys.stderr.write(line)
                tail.append(line.rstrip("\n"))
            code = proc.wait()
    except KeyboardInterrupt:
        own.write_status(JobStatus.CANCELLED, error="interrupted")
        raise
    except OSError as exc:
        own.write_status(JobStatus.FAILED, error=f"cannot run {argv[0]}: {exc}")
        raise StageFailed(f"cannot run {argv[0]}: {exc}") from None
    if code != 0:
        error = f"`{' '.join(argv)}` exited {code}" + (f": {tail[-1]}" if tail else "")
        own.write_status(JobStatus.FAILED, error=error, traceback=list(tail), exit_code=code)
        raise StageFailed(error)
    own.write_status(JobStatus.COMPLETED, finished=time.time(), exit_code=0)
    RunDirectory(pipeline_dir).write_progress(epoch=index + 1, epochs=total, step=index + 1, total_steps=total,
                                              started=time.time(), steps_per_s=None)
    return code


def run_stages_in_order(stages: Sequence[dict[str, object]], workdir: str, pipeline_dir: str) -> int:
    """The local pipeline: each stage in turn; after a failure the rest are marked cancelled, not run."""
    total = len(stages)
    for index, stage in enumerate(stages):
        try:
            run_stage(stage["argv"], workdir, str(stage["run_dir"]), index=index,  # type: ignore[arg-type]
                      total=total, pipeline_dir=pipeline_dir)
        except (StageFailed, KeyboardInterrupt) as exc:
            why = "the pipeline was cancelled" if isinstance(exc, KeyboardInterrupt) else \
                f"stage {stage['stage']!r} failed"
            for later in stages[index + 1:]:
                RunDirectory(Path(str(later["run_dir"]))).write_status(JobStatus.CANCELLED, error=f"not run: {why}")
            raise
    return 0
