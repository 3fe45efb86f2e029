"""`--dependency` on hpc-train ids: translated to SLURM ids through the registry (no SLURM needed here;
tests/slurm/test_scheduler.py submits a real afterok chain named by an hpc-train id)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

from hpc_train.errors import JobNotFound, SpecError
from hpc_train.jobs import resolve_dependency
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.scheduler.dependencies import dependency_job_ids, never_met
from hpc_train.scheduler.test_only import without_dependency
from hpc_train.status import JobStatus

HPC_TRAIN = Path(sys.executable).parent / "hpc-train"


def record(job_id: str, executor: str = "slurm", scheduler_id: str | None = None, kind: str = "job",
           parent: str | None = None) -> JobRecord:
    return JobRecord(id=job_id, name="t", kind=kind, executor=executor, scheduler_id=scheduler_id,
                     run_dir="/tmp/none", status=JobStatus.PENDING, parent=parent)


@pytest.fixture
def registry(tmp_path: Path) -> JobRegistry:
    registry = JobRegistry(tmp_path / "home")
    registry.add(record("3f2a91c0", scheduler_id="4242"))
    registry.add(record("3f9b0000", executor="sbatch", scheduler_id="4243"))
    registry.add(record("12345678", scheduler_id="777"))  # an hpc-train id made of digits only
    registry.add(record("b0b0b0b0", kind="batch"))
    registry.add(record("b0b0b0b0-01", scheduler_id="51", parent="b0b0b0b0"))
    registry.add(record("b0b0b0b0-02", scheduler_id="52", parent="b0b0b0b0"))
    registry.add(record("10ca1000", executor="local", scheduler_id="999"))
    return registry


@pytest.mark.parametrize(("given", "expected"), [
    ("afterok:3f2a91c0", "afterok:4242"),
    ("afterok:3f2a", "afterok:4242"),  # a unique prefix is enough
    ("afterany:3f2a91c0:3f9b", "afterany:4242:4243"),
    ("afterok:1234", "afterok:1234"),  # SLURM ids pass unchanged ...
    ("afterok:1234_5", "afterok:1234_5"),
    ("afterok:12345678", "afterok:777"),  # ... unless they are exactly an hpc-train id
    ("afterok:b0b0b0b0", "afterok:51:52"),  # a batch stands for its jobs
    ("afterok:3f2a91c0?afternotok:99", "afterok:4242?afternotok:99"),
    ("afterok:3f2a91c0,singleton", "afterok:4242,singleton"),
])
def test_hpc_train_ids_become_slurm_ids(registry: JobRegistry, given: str, expected: str) -> None:
    assert resolve_dependency(given, registry) == expected


@pytest.mark.parametrize(("given", "error", "message"), [
    ("afterok:10ca1000", SpecError, "job 10ca1000 ran on local, not SLURM"),
    ("afterok:3f", JobNotFound, "ambiguous"),
    ("afterok:nosuchjob", JobNotFound, "no job 'nosuchjob'"),
    ("afterfoo:3f2a91c0", SpecError, "allowed: after, afterany"),
    ("afterok", SpecError, "not a dependency SLURM takes"),
])
def test_bad_dependencies_are_user_errors(registry: JobRegistry, given: str, error: type[Exception],
                                          message: str) -> None:
    with pytest.raises(error, match=message):
        resolve_dependency(given, registry)


def test_cli_refuses_a_dependency_on_the_local_executor(tmp_path: Path) -> None:
    proc = subprocess.run([str(HPC_TRAIN), "--home", str(tmp_path / "home"), "submit",
                           str(REPO / "configs" / "quickstart.yaml"), "--executor", "local", "--dependency",
                           "afterok:1234"], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and "--dependency afterok:1234 needs SLURM" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


# -- dependencies that can never be met (the jobs' ends as sacct would give them)

ENDED = {"10": JobStatus.FAILED, "11": JobStatus.COMPLETED, "12": JobStatus.CANCELLED}


@pytest.mark.parametrize(("dependency", "impossible"), [
    ("afterok:10", "afterok:10 can never be met: SLURM job 10 ended failed"),
    ("afterok:11", None),
    ("afterok:11:12", "afterok:12 can never be met: SLURM job 12 ended cancelled"),
    ("afterok:99", None),  # not ended (or not known): SLURM decides
    ("afternotok:11", "afternotok:11 can never be met: SLURM job 11 ended completed"),
    ("afternotok:10", None),
    ("afterany:10", None),
    ("afterok:11,afternotok:11", "afternotok:11 can never be met: SLURM job 11 ended completed"),
    ("afterok:10?afterok:11", None),  # one of them is enough
    ("afterok:10?afternotok:11", ("afterok:10 can never be met: SLURM job 10 ended failed; "
                                 "afternotok:11 can never be met: SLURM job 11 ended completed")),
    ("afterok:10+5", "afterok:10 can never be met: SLURM job 10 ended failed"),
    ("singleton", None),
])
def test_dependency_that_can_never_be_met(dependency: str, impossible: str | None) -> None:
    assert never_met(dependency, ENDED) == impossible


def test_dependency_job_ids() -> None:
    assert dependency_job_ids("afterok:1:2+5,afterany:3_4,singleton") == ["1", "2", "3_4"]


def test_test_only_script_leaves_the_dependency_out() -> None:
    script = "#!/bin/bash\n#SBATCH --job-name=x\n#SBATCH --dependency=afterok:12\n#SBATCH -d afterany:3\nsrun x\n"
    assert without_dependency(script) == "#!/bin/bash\n#SBATCH --job-name=x\nsrun x\n"
