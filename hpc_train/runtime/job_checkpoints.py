"""Where a job's checkpoints go: `checkpoint.dir` of its spec, else `<run dir>/checkpoints`.

Every submitted job (sbatch, submitit, the local executor) and pipeline stage exports HPC_TRAIN_RUN_DIR, so a user's
own script inside it finds the same folder the built-in worker uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hpc_train.rundir import RunDirectory
from hpc_train.spec.model import JobSpec

RUN_DIR_VAR = "HPC_TRAIN_RUN_DIR"
DEFAULT_KEEP_LAST = 3  # CheckpointSpec.keep_last's default


@dataclass(frozen=True)
class CheckpointPlace:
    """A checkpoint folder, how many checkpoints to keep there, and why it was chosen (for messages)."""

    directory: Path
    keep_last: int
    origin: str


def checkpoint_dir(spec: JobSpec, run_dir: RunDirectory) -> Path:
    """checkpoint.dir when set, else the run directory's checkpoints/ folder."""
    return Path(spec.checkpoint.dir) if spec.checkpoint.dir else run_dir.checkpoints


def job_checkpoint_place(environ: Mapping[str, str] | None = None) -> CheckpointPlace | None:
    """Inside a job: its checkpoint folder (from the run directory's spec.yaml when it has one); else None."""
    env = os.environ if environ is None else environ
    raw = env.get(RUN_DIR_VAR)
    if not raw:
        return None
    run_dir = RunDirectory(raw)
    if run_dir.spec_path.is_file():
        from hpc_train.spec import load_spec

        spec = load_spec(run_dir.spec_path)
        origin = (f"checkpoint.dir of {run_dir.spec_path}" if spec.checkpoint.dir
                  else f"the job's run directory ({RUN_DIR_VAR}={raw})")
        return CheckpointPlace(checkpoint_dir(spec, run_dir), spec.checkpoint.keep_last, origin)
    return CheckpointPlace(run_dir.checkpoints, DEFAULT_KEEP_LAST, f"the job's run directory ({RUN_DIR_VAR}={raw})")
