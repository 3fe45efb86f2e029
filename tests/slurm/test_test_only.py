"""`sbatch --test-only` before the queue: `validate` (when the controller answers) and `submit` to
SLURM ask SLURM whether it would take the rendered script. A refusal is exit 2 with the spec key
named, SLURM's words quoted and a hint; nothing reaches the queue and no run directory is left.

The test cluster's partitions have MaxTime=INFINITE and accounting does not enforce accounts or
QOS (slurm/slurm.conf.in), so time, account and QOS refusals are tested with SLURM's messages in
tests/cli/test_doctor.py (test_refusals_name_the_key) rather than here.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from support import PYTHON, REPO, SlurmCluster
from test_scheduler_errors import client_env

pytestmark = pytest.mark.slurm

HPC_TRAIN = str(Path(PYTHON).parent / "hpc-train")
QUICKSTART = REPO / "configs" / "quickstart.yaml"

# --set override -> the key the message must name, and words it must hold
REFUSED = [
    ("resources.partition=nope", "resources.partition", ("'nope'", "Invalid partition name",
                                                         "partitions on this cluster: debug, long, urgent")),
    ("resources.gpus_per_node=1", "resources.gpus_per_node", ("gres", "debug: none")),
    ("resources.constraint=infiniband", "resources.constraint", ("Invalid feature specification", "'infiniband'")),
    ("resources.memory=900GB", "resources.memory", ("Requested node configuration is not available", "921600M",
                                                    "partition debug has 2 nodes")),
    ("resources.cpus_per_task=64", "resources.cpus_per_task", ("node configuration", "64")),
]
VERBS = [["validate"], ["submit", "--executor", "slurm"], ["submit", "--sbatch"]]


def run_cli(tmp_path: Path, verb: list[str], *sets: str) -> subprocess.CompletedProcess[str]:
    args = [arg for override in sets for arg in ("--set", override)]
    return subprocess.run([HPC_TRAIN, "--home", str(tmp_path / "home"), *verb, str(QUICKSTART),
                           "--set", f"output_dir={tmp_path / 'runs'}", *args],
                          capture_output=True, text=True, timeout=120, env=client_env(), check=False)


def queued(name: str) -> str:
    """Jobs of that name in the queue and in accounting (both should be empty)."""
    squeue = subprocess.run(["squeue", "-h", "-n", name], capture_output=True, text=True, timeout=30, check=True)
    sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now-1hours", "--name", name], capture_output=True, text=True,
                           timeout=30, check=True)
    return squeue.stdout.strip() + sacct.stdout.strip()


@pytest.mark.parametrize("verb", VERBS, ids=["validate", "submit-slurm", "submit-sbatch"])
@pytest.mark.parametrize(("override", "key", "phrases"), REFUSED, ids=[r[1] for r in REFUSED])
def test_refused_before_the_queue(slurm_cluster: SlurmCluster, tmp_path: Path, verb: list[str], override: str,
                                  key: str, phrases: tuple[str, ...]) -> None:
    name = f"tonly-{uuid.uuid4().hex[:8]}"
    proc = run_cli(tmp_path, verb, override, f"name={name}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("hpc-train: error:") == 1
    assert f"{QUICKSTART}: {key}: SLURM would refuse this job" in proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())
    assert queued(name) == ""


def test_validate_says_slurm_would_take_it(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    proc = run_cli(tmp_path, ["validate"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("valid (SLURM would take it: sbatch --test-only)")


def test_validate_without_asking_the_cluster(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # a spec written for another cluster: --no-check-cluster leaves SLURM out of it
    proc = run_cli(tmp_path, ["validate", "--no-check-cluster"], "resources.partition=nope")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith(": valid")


def test_batch_is_refused_before_any_array_is_queued(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from hpc_train.errors import SpecError
    from hpc_train.orchestrator import TrainingOrchestrator

    for variable, value in client_env().items():
        monkeypatch.setenv(variable, value)
    orch = TrainingOrchestrator(executor="slurm", home=tmp_path / "home", output_dir=tmp_path / "runs")
    name = f"tonly-{uuid.uuid4().hex[:8]}"
    configs = [{"name": f"{name}-{n}", "model": "random_forest", "data_path": "sklearn:iris",
                "params": {"n_estimators": 5 + n}} for n in range(3)]
    configs[2]["resources"] = {"partition": "nope"}
    # two resource groups (two arrays): the second would be refused, so neither may be queued
    with pytest.raises(SpecError, match="resources.partition") as refused:
        orch.submit_batch_training(configs, name=name, resources={"cpu": 1, "memory": "500MB"})
    assert "Invalid partition name" in str(refused.value)
    assert orch.registry.list() == []
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert all(queued(config["name"]) == "" for config in configs)
