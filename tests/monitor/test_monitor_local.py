"""TrainingMonitor and `hpc-train monitor/plot` on a real local job (quickstart, submitit local executor),
and on registry records in each state: pending (nothing written yet), failed, unknown."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from png_checks import assert_png

from hpc_train.cli.main import main
from hpc_train.errors import JobNotFound
from hpc_train.jobs import submit_job, wait_for
from hpc_train.monitor import METRIC_KEYS, TrainingMonitor
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.scheduler.local import LocalScheduler
from hpc_train.spec import load_spec
from hpc_train.status import JobStatus

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
# enough trees for several seconds of fitting on two cores, so the job is seen running
TREES = 2000
LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "TORCHELASTIC_")


@dataclass
class LocalJob:
    home: Path
    registry: JobRegistry
    id: str


@pytest.fixture(scope="module")
def local_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJob]:
    tmp = tmp_path_factory.mktemp("monitor-local")
    registry = JobRegistry(tmp / "home")
    spec = load_spec(QUICKSTART, [f"model.hyperparameters.n_estimators={TREES}", f"output_dir={tmp / 'runs'}"])
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(LAUNCHER_PREFIXES)]:
            env.delenv(name)  # an enclosing SLURM job's variables would make the worker a rank of it
        env.setenv("HPC_TRAIN_RESOURCE_INTERVAL", "0.5")
        record = submit_job(spec, executor="local", base_dir=QUICKSTART.parent, registry=registry)
    assert isinstance(record, JobRecord)
    yield LocalJob(tmp / "home", registry, record.id)
    final = registry.get(record.id)
    if not final.status.is_terminal:
        LocalScheduler().cancel(final)


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def once(home: Path, job_id: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """`hpc-train monitor ID --once` lines."""
    assert main(["--home", str(home), "monitor", job_id, "--once"]) == 0
    return capsys.readouterr().out.splitlines()


def test_running_job_reports_resources_and_metrics(local_job: LocalJob,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monitor = TrainingMonitor(local_job.home)
    wait_until(lambda: monitor.track_resource_usage(local_job.id)["samples"] >= 1, 90, "a resource sample")
    metrics = monitor.track_metrics(local_job.id)
    assert metrics["status"] == "running", "the job ended before it could be watched: raise TREES"
    assert set(METRIC_KEYS) <= set(metrics) and 0.0 <= metrics["progress"] <= 1.0
    usage = monitor.track_resource_usage(local_job.id)
    assert usage["cpu"] >= 0 and usage["ranks"] == 1 and usage["samples"] >= 1
    assert 0 < usage["memory_used_bytes"] <= usage["memory_total_bytes"]
    assert usage["memory"].count("/") == 1 and usage["gpu"] == [] and usage["gpu_util"] is None
    run_dir = Path(local_job.registry.get(local_job.id).run_dir)
    assert (run_dir / "resources.rank0.jsonl").is_file()

    lines = once(local_job.home, local_job.id, capsys)
    assert "status: running" in lines
    assert any(line.startswith("progress: ") and line.endswith("%") for line in lines)
    assert any(line.startswith("eta: ") for line in lines)
    assert any(line.startswith("loss: ") for line in lines)
    assert any(line.startswith("cpu: ") and "%" in line for line in lines)


def test_finished_job_metrics_plot_and_snapshot(local_job: LocalJob, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    [record] = wait_for(local_job.registry, [local_job.id], timeout=120, poll=0.5, max_poll=1.0)
    assert record.status == JobStatus.COMPLETED, RunDirectory(record.run_dir).status_record()
    monitor = TrainingMonitor(local_job.home)
    metrics = monitor.track_metrics(local_job.id)
    assert metrics["status"] == "completed" and metrics["progress"] == 1.0 and metrics["epoch"] == 1
    assert metrics["val_accuracy"] > 0.8 and metrics["samples_per_s"] > 0 and metrics["lr"] is None
    usage = monitor.track_resource_usage(local_job.id)
    assert usage["samples"] >= 2 and 0 < usage["memory_used_bytes"] <= usage["memory_total_bytes"]

    path = monitor.plot_training_progress(local_job.id)
    assert path == Path(record.run_dir) / "progress.png"
    assert_png(path, 1200, 800)

    lines = once(local_job.home, local_job.id, capsys)
    assert "status: completed" in lines and "progress: 100%" in lines and "eta: -" in lines
    assert "epoch: 1/1" in lines and not any(line.startswith("error:") for line in lines)

    target = tmp_path / "out" / "job.png"
    assert main(["--home", str(local_job.home), "plot", local_job.id[:5], "-o", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert_png(target, 1200, 800)
    # the plain (non-TTY) live view of an ended job prints the snapshot and exits 0
    assert main(["--home", str(local_job.home), "monitor", local_job.id, "--interval", "0.2"]) == 0
    assert "status: completed" in capsys.readouterr().out.splitlines()


def add_record(home: Path, job_id: str, run_dir: Path, *, scheduler_id: str | None,
               status: JobStatus = JobStatus.PENDING) -> JobRecord:
    return JobRegistry(home).add(JobRecord(id=job_id, name="toy", kind="job", executor="local",
                                           scheduler_id=scheduler_id, run_dir=str(run_dir), status=status))


def test_pending_job_has_empty_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # submitted, the controller alive (this process stands in for it), the worker has written nothing
    add_record(tmp_path / "home", "pend0001", tmp_path / "not-yet", scheduler_id=str(os.getpid()))
    monitor = TrainingMonitor(tmp_path / "home")
    usage = monitor.track_resource_usage("pend0001")
    assert usage["samples"] == 0 and usage["cpu"] is None and usage["memory"] is None and usage["gpu"] == []
    metrics = monitor.track_metrics("pend0001")
    assert metrics["status"] == "pending" and metrics["progress"] == 0.0
    assert all(metrics[key] is None for key in METRIC_KEYS)

    lines = once(tmp_path / "home", "pend0001", capsys)
    assert "status: pending" in lines and "progress: 0%" in lines and "eta: unknown" in lines
    assert "loss: -" in lines and "cpu: -" in lines and "gpu: none" in lines

    path = monitor.plot_training_progress("pend0001", tmp_path / "pending.png")
    assert_png(path, 1200, 800)  # titles and "nothing yet" notes


def test_failed_job_shows_its_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = RunDirectory(tmp_path / "run").create()
    run_dir.write_status(JobStatus.FAILED, error="RuntimeError: boom in epoch 3", traceback=["line 1"])
    add_record(tmp_path / "home", "fail0001", run_dir.path, scheduler_id=None, status=JobStatus.RUNNING)
    lines = once(tmp_path / "home", "fail0001", capsys)
    assert "status: failed" in lines and "error: RuntimeError: boom in epoch 3" in lines
    assert TrainingMonitor(tmp_path / "home").track_metrics("fail0001")["status"] == "failed"
    assert main(["--home", str(tmp_path / "home"), "monitor", "fail0001", "--interval", "0.2"]) == 1


def test_unknown_job_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monitor = TrainingMonitor(tmp_path / "home")
    for call in (monitor.track_metrics, monitor.track_resource_usage, monitor.plot_training_progress,
                 monitor.plot_sweep):
        with pytest.raises(JobNotFound):
            call("nope")
    assert main(["--home", str(tmp_path / "home"), "monitor", "nope", "--once"]) == 2
    assert main(["--home", str(tmp_path / "home"), "plot", "nope"]) == 2
    assert "no job 'nope'" in capsys.readouterr().err
