"""The local executor (`submit --executor local`) as a cluster would behave: the time limit signals first
(checkpoint, TIMEOUT, a later run resumes bitwise), output reaches the log files while the job runs, a
reused pid is not taken for the job, and a cancel in the job's first instant ends every process of it.

The time-limit job is configs/mlp.yaml's MLP widened to 256x256, batch 16 (90 steps an epoch), 8 epochs,
built as local_models' sleepy copy (0.08 s pause a step, about 60 s in all) under resources.time 1 minute
and a 25 s grace: the signal comes about 35 s in, well inside the training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import types
from pathlib import Path
from typing import Any

import pytest
from local_models import BUILT_LINE
from support import PYTHON, wait_until

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.scheduler.local import IDENTITY_FILE, process_start_time
from hpc_train.status import JobStatus

REPO = Path(__file__).resolve().parents[2]
HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
SPEC = REPO / "configs" / "mlp.yaml"
HERE = Path(__file__).resolve().parent
EPOCHS = 8
TRAINING = [f"training.epochs={EPOCHS}", "training.early_stopping=null", "data.batch_size=16",
            "checkpoint.keep_last=100", "resources.cpus_per_task=1"]
SLEEPY = ["model.type=local_models:chatty_sleepy_mlp",
          'model.hyperparameters={"hidden_sizes": [256, 256], "dropout": 0.1, "step_delay": 0.08}']
PLAIN = ["model.hidden_sizes=[256,256]"]
TIME_LIMIT = ["resources.time=00:01:00", "preemption.grace_seconds=25"]


def env() -> dict[str, str]:
    """No SLURM variables; the jobs import local_models through PYTHONPATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    path = [str(HERE), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {**base, "PYTHONPATH": os.pathsep.join(path)}


def sets(overrides: list[str]) -> list[str]:
    return [word for item in overrides for word in ("--set", item)]


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HPC_TRAIN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env(),
                          check=False)




def shown(home: Path, job_id: str) -> dict[str, Any]:
    proc = cli("--home", home, "status", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def submit(home: Path, *overrides: str) -> str:
    proc = cli("--home", home, "submit", SPEC, "--executor", "local", *sets(list(overrides)))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


def processes_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.checkpoint
@pytest.mark.timeout(240)
def test_time_limit_signals_first_ends_timeout_and_a_run_resumes_bitwise(tmp_path: Path) -> None:
    home, checkpoints = tmp_path / "home", tmp_path / "checkpoints"
    reference = subprocess.Popen([HPC_TRAIN, "--home", str(home), "run", str(SPEC),
                                  *sets([*TRAINING, *PLAIN]), "--run-dir", str(tmp_path / "reference"), "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        overrides = [*TRAINING, *SLEEPY, f"checkpoint.dir={checkpoints}", f"output_dir={tmp_path / 'runs'}"]
        job_id = submit(home, *overrides, *TIME_LIMIT)
        run_dir = Path(shown(home, job_id)["run_dir"])

        # the worker's first line is in the logs while the job runs
        def logged() -> bool:
            proc = cli("--home", home, "logs", job_id)
            return proc.returncode == 0 and BUILT_LINE in proc.stdout
        wait_until(logged, 60, "the worker's line in `hpc-train logs`")
        assert shown(home, job_id)["status"] in ("pending", "running")

        wait_until(lambda: shown(home, job_id)["status"] not in ("pending", "running"), 120, "the time limit")
        record = json.loads((run_dir / "status.json").read_text())
        assert record["status"] == "timeout", record
        assert record["preempted_by"] == "SIGUSR1", record  # the worker got the signal and checkpointed
        checkpoint = HDF5CheckpointStore(checkpoints, keep_last=None).load()
        assert checkpoint is not None and checkpoint.meta["reason"] == "preempted", "no preemption checkpoint"
        total = EPOCHS * 90
        assert 0 < checkpoint.step < total, checkpoint.step
        assert not (run_dir / "results.json").exists()

        again = cli("--home", home, "-v", "run", SPEC, *sets(overrides), "--run-dir", tmp_path / "again", "--json",
                    timeout=180)
        assert again.returncode == 0, again.stderr
        assert f"resumed from checkpoint at step {checkpoint.step}" in again.stderr
        out, err = reference.communicate(timeout=180)
        assert reference.returncode == 0, err
        resumed = json.loads(again.stdout.replace(BUILT_LINE + "\n", ""))  # the model's own line comes first
        assert resumed["param_digests"] == json.loads(out)["param_digests"]
        assert resumed["epochs_run"] == EPOCHS
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()


def test_a_reused_pid_is_not_the_job(tmp_path: Path) -> None:
    """A record naming a live pid (this test's) with another start time: the job shows failed (it never
    said it finished), and cancel does not signal that process."""
    home, run_dir = tmp_path / "home", tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "updated": time.time()}))
    started = process_start_time(os.getpid())
    assert started is not None
    (run_dir / IDENTITY_FILE).write_text(json.dumps({"pid": os.getpid(), "started": started - 3600}))
    registry = JobRegistry(home)
    record = registry.add(JobRecord(id=JobRegistry.new_id(), name="old", kind="job", executor="local",
                                    scheduler_id=str(os.getpid()), run_dir=str(run_dir), status=JobStatus.RUNNING))
    received: list[int] = []

    def note(signum: int, frame: types.FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        assert shown(home, record.id)["status"] == "failed"
        cancelled = cli("--home", home, "cancel", record.id)
        assert cancelled.returncode == 0, cancelled.stderr
        time.sleep(0.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert received == []
    # the same record with the right start time is the live job (this process)
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "updated": time.time()}))
    (run_dir / IDENTITY_FILE).write_text(json.dumps({"pid": os.getpid(), "started": started}))
    other = registry.add(JobRecord(id=JobRegistry.new_id(), name="live", kind="job", executor="local",
                                   scheduler_id=str(os.getpid()), run_dir=str(run_dir), status=JobStatus.RUNNING))
    assert shown(home, other.id)["status"] == "running"


@pytest.mark.timeout(180)
def test_cancel_right_after_submit_ends_every_process_and_stays_cancelled(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for attempt in range(3):
        runs = tmp_path / f"runs{attempt}"
        job_id = submit(home, *TRAINING, *PLAIN, f"output_dir={runs}")
        cancelled = cli("--home", home, "cancel", job_id)  # no wait
        assert cancelled.returncode == 0, cancelled.stderr
        run_dir = Path(shown(home, job_id)["run_dir"])
        assert processes_mentioning(str(run_dir)) == [], f"attempt {attempt}: processes of the job remain"
        time.sleep(3)  # a late worker would have started and written by now
        assert processes_mentioning(str(run_dir)) == [], f"attempt {attempt}: a process of the job started late"
        assert json.loads((run_dir / "status.json").read_text())["status"] == "cancelled"
        assert shown(home, job_id)["status"] == "cancelled"
        assert not (run_dir / "metrics.jsonl").exists()
