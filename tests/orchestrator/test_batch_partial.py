"""A batch whose second sbatch fails: the job SLURM accepted is kept and registered under the batch, the one
not submitted is registered as failed with the reason, and the error names both (exit 2 in the CLI).

No cluster: `sbatch` and `scontrol` are stand-ins first on PATH (as in tests/slurm/test_scheduler_errors.py);
the sbatch stand-in accepts its first call and refuses the second, as sbatch refuses a bad request.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hpc_train.orchestrator.batch import BatchPartlySubmitted, submit_batch
from hpc_train.registry import JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.spec import load_spec
from hpc_train.status import JobStatus

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"

SBATCH = """#!/bin/sh
# --test-only (the batch's check per resource group) passes, as for resources SLURM has;
# then the first submission is accepted and every later one refused
case "$*" in
  *--test-only*) echo "sbatch: Job 4240 to start at 2026-12-01T00:00:00 using 1 processors on nodes n1" >&2; exit 0 ;;
esac
count=$(cat "{counter}" 2>/dev/null || echo 0)
count=$((count + 1))
echo $count > "{counter}"
if [ $count -gt 1 ]; then
  echo "sbatch: error: Batch job submission failed: Requested node configuration is not available" >&2
  exit 1
fi
case "$*" in
  *--parsable*) echo 4242 ;;
  *) echo "Submitted batch job 4242" ;;
esac
"""
SCONTROL = """#!/bin/sh
case "$1" in
  ping) echo "Slurmctld(primary) at stand-in is UP" ;;
  show) echo "MaxArraySize = 1001" ;;
esac
"""


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH.format(counter=tmp_path / "sbatch-calls")), ("scontrol", SCONTROL),
                       ("srun", "#!/bin/sh\nexit 0\n")):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path / "sbatch-calls"


@pytest.mark.parametrize("executor", ["sbatch", "slurm"])
def test_second_submission_fails_first_job_is_kept_and_registered(
        stand_ins: Path, tmp_path: Path, executor: str) -> None:
    # different resources: on the submitit path each is its own array, so two sbatch calls there too
    specs = [load_spec(QUICKSTART, [f"name=first-{executor}", "resources.time=00:10:00"]),
             load_spec(QUICKSTART, [f"name=second-{executor}", "resources.time=00:20:00"])]
    registry = JobRegistry(tmp_path / "home")
    with pytest.raises(BatchPartlySubmitted) as caught:
        submit_batch(specs, name="half", executor=executor, registry=registry, base_dir=REPO,
                     output_dir=str(tmp_path / "runs"))
    assert stand_ins.read_text().strip() == "2"  # both were tried
    error = caught.value
    message = str(error)
    assert "1 of 2 jobs accepted" in message and "4242" in message
    assert f"not submitted: second-{executor}" in message and "node configuration is not available" in message
    assert error.exit_code == 2

    batch = registry.get(error.parent.id)
    first, second = registry.children(batch.id)
    assert (first.name, first.scheduler_id, first.status) == (f"first-{executor}", "4242", JobStatus.PENDING)
    assert Path(first.run_dir).is_dir()  # the accepted job's run directory is kept: SLURM will run it there
    assert (second.name, second.scheduler_id, second.status) == (f"second-{executor}", None, JobStatus.FAILED)
    assert "not submitted" in second.extra["error"]
    recorded = RunDirectory(second.run_dir).status_record() or {}
    assert recorded["status"] == "failed" and "node configuration is not available" in recorded["error"]


def test_first_submission_fails_nothing_is_left(stand_ins: Path, tmp_path: Path) -> None:
    stand_ins.write_text("1\n")  # the stand-in refuses from the first call on
    registry = JobRegistry(tmp_path / "home")
    with pytest.raises(Exception, match="node configuration is not available") as caught:
        submit_batch([load_spec(QUICKSTART, ["name=only"])], name="none", executor="sbatch", registry=registry,
                     base_dir=REPO, output_dir=str(tmp_path / "runs"))
    assert not isinstance(caught.value, BatchPartlySubmitted)
    assert registry.list() == []
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
