"""slurmctld stops and starts again while a job runs (an upgrade, a failover, a crash): the job is not
lost, `status` never shows it ended while the controller is away, and `wait` ends with the real result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from support import REPO, SlurmCluster, wait_until
from test_scheduler import clean_env, hpc_train, sacct_state, sets, status_json

pytestmark = pytest.mark.slurm

SPEC = REPO / "configs" / "mlp.yaml"
# Long enough (tens of seconds) that the controller's restart falls inside the run.
SLOW = ["data.train_path=sklearn:iris", "data.batch_size=4", "training.epochs=150", "training.early_stopping=null",
        "resources.memory=1GB", "resources.time=00:10:00", "checkpoint.interval=50"]


def controller_pid(cluster: SlurmCluster) -> int:
    return int((cluster.state_dir / "run" / "slurmctld.pid").read_text().strip())


def controller_answers() -> bool:
    return subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30, env=clean_env(),
                          check=False).stdout.count("is UP") > 0


@pytest.mark.timeout(400)
def test_job_survives_a_controller_restart(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "runs"
    proc = hpc_train(home, "submit", SPEC, *sets([*SLOW, f"output_dir={out}"]), "--executor", "slurm")
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.split()[-1]
    own_status = Path(status_json(home, job)["run_dir"]) / "status.json"
    wait_until(lambda: own_status.exists() and json.loads(own_status.read_text())["status"] == "running", 180,
               "the job to start training")

    pid = controller_pid(slurm_cluster)
    os.kill(pid, signal.SIGTERM)  # slurmctld saves its state and exits; slurmd and the job carry on
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 60, "slurmctld to exit")
    try:
        away = hpc_train(home, "status", job, "--json")
        assert "Traceback" not in away.stderr, away.stderr
        if away.returncode == 0:  # accounting (slurmdbd) still answers: the job is not over
            assert json.loads(away.stdout)["status"] in ("pending", "running"), away.stdout
        else:  # or one message saying the scheduler is away
            assert away.returncode == 2 and away.stderr.startswith("hpc-train: error:"), away.stderr
    finally:
        # as slurm/start.sh does; the daemon's output goes to a file (a pipe would stay open in it)
        with open(slurm_cluster.state_dir / "log" / "slurmctld.out", "a") as log:
            started = subprocess.run(["slurmctld", "-i"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     timeout=60, env=clean_env(), check=False)
        assert started.returncode == 0, (slurm_cluster.state_dir / "log" / "slurmctld.out").read_text()[-2000:]
        wait_until(controller_answers, 60, "slurmctld to answer again")

    done = hpc_train(home, "wait", job, "--timeout", "240", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = status_json(home, job)
    assert summary["status"] == "completed" and summary["progress"] == 1.0
    assert sacct_state(summary["scheduler_id"]) == "COMPLETED"
    results = json.loads(hpc_train(home, "results", job, "--json").stdout)
    assert results["epochs_run"] == 150 and results["restarts"] == 0  # ran through: not requeued, not lost
