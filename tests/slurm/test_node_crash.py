"""A node dies under a running job (every process of it SIGKILLed: nothing the job can catch).

SLURM notices after SlurmdTimeout, marks the node down and requeues the job on the other node, where
it resumes from its last checkpoint. `status` must never call the job ended in between, `wait` must
end with its real result, the result must equal an uninterrupted run bit for bit, and status says
what happened (last_fault). slurm/node.sh does the crash and brings the node back afterwards.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
from support import PYTHON, REPO, SlurmCluster, wait_until
from test_scheduler import clean_env, hpc_train, sets, status_json

pytestmark = pytest.mark.slurm

SPEC = REPO / "configs" / "mlp.yaml"
# One rank, one CPU (so the run here below has the same thread count), a checkpoint every epoch; about a
# minute of training, so the crash right after the first checkpoint lands well inside it.
TRAINING = ["data.train_path=sklearn:iris", "data.batch_size=4", "training.epochs=300", "training.early_stopping=null",
            "resources.cpus_per_task=1", "resources.memory=1GB", "resources.time=00:15:00",
            "checkpoint.interval=1", "checkpoint.keep_last=2", "training.seed=3"]
NODE_SH = REPO / "slurm" / "node.sh"


def node_sh(*args: str) -> None:
    proc = subprocess.run([str(NODE_SH), *args], capture_output=True, text=True, timeout=180, env=clean_env(),
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def node_of(scheduler_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", scheduler_id, "-o", "%N"], capture_output=True, text=True,
                          timeout=30, env=clean_env(), check=True).stdout.strip()


@pytest.mark.timeout(600)
def test_node_crash_requeues_and_resumes_bitwise(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    if slurm_cluster.nodes < 2:
        pytest.fail("needs the 2-node test cluster (slurm/start.sh --nodes 2)")
    home, out = tmp_path / "home", tmp_path / "runs"
    proc = hpc_train(home, "submit", SPEC, *sets([*TRAINING, f"output_dir={out}"]), "--executor", "slurm")
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.split()[-1]
    summary = status_json(home, job)
    run_dir, sched = Path(summary["run_dir"]), summary["scheduler_id"]
    checkpoints = run_dir / "checkpoints"
    wait_until(lambda: checkpoints.is_dir() and any(checkpoints.glob("ckpt-*.h5")), 240, "the first checkpoint")
    node = node_of(sched)
    assert node in ("n1", "n2"), node

    # The same training, uninterrupted, in this process's machine while SLURM works out the crash.
    reference: dict[str, object] = {}

    def train_reference() -> None:
        env = {**clean_env(), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        ran = subprocess.run([PYTHON, "-m", "hpc_train", "run", str(SPEC), *sets(TRAINING), "--json",
                              "--run-dir", str(tmp_path / "reference")], capture_output=True, text=True,
                             timeout=400, env=env, check=False)
        reference.update(json.loads(ran.stdout) if ran.returncode == 0 else {"error": ran.stderr[-3000:]})

    helper = threading.Thread(target=train_reference)
    helper.start()
    node_sh("crash", node)
    seen: list[str] = []
    try:
        def requeued_and_running_elsewhere() -> bool:
            shown = status_json(home, job)["status"]
            seen.append(shown)
            assert shown in ("pending", "running", "requeued"), f"status said {shown} after the crash: {seen}"
            return shown == "running" and node_of(sched) not in ("", node)
        # SlurmdTimeout (60 s) to notice, then the requeue and a start on the other node
        wait_until(requeued_and_running_elsewhere, 300, f"the job to run again off {node}", poll=1.0)
        done = hpc_train(home, "wait", job, "--timeout", "300", timeout=360)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        node_sh("start", node)
        helper.join(timeout=420)

    final = status_json(home, job)
    assert final["status"] == "completed" and final["restarts"] == 1, final
    assert final["last_fault"].startswith(f"NODE_FAIL on {node}"), final["last_fault"]
    results = json.loads(hpc_train(home, "results", job, "--json").stdout)
    assert results["restarts"] == 1 and results["resumed_from_step"], results
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 301)), epochs  # each epoch reported once, none lost
    assert "error" not in reference, reference.get("error")
    assert results["param_digests"] == reference["param_digests"], "the resumed job differs from the uninterrupted run"
