"""The built wheel, installed into a new venv outside the repository, submits to the test cluster, and the
job (run by that venv's python on the node) completes: what a user who ran `pip install hpc-train` on a
login node does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import SlurmCluster
from wheel_venv import install_wheel, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("how", [["--executor", "slurm"], ["--sbatch"]])
def test_installed_wheel_submits_to_slurm(slurm_cluster: SlurmCluster, how: list[str], tmp_path: Path) -> None:
    wheel = install_wheel(tmp_path)
    assert "SLURM_CONF" in wheel.env
    assert run_cli([wheel.cli, "init", "quickstart"], wheel.work, wheel.env).returncode == 0
    proc = run_cli([wheel.cli, "submit", "quickstart.yaml", *how, "--set", "resources.time=00:05:00"],
                   wheel.work, wheel.env)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split()[-1]
    proc = run_cli([wheel.cli, "wait", job_id, "--timeout", "400"], wheel.work, wheel.env, timeout=450)
    assert proc.stdout.split() == [job_id, "completed"], proc.stdout + proc.stderr
    status = json.loads(run_cli([wheel.cli, "status", job_id, "--json"], wheel.work, wheel.env).stdout)
    assert status["executor"] == how[-1].lstrip("-") and status["scheduler_id"], status
    results = json.loads(run_cli([wheel.cli, "results", job_id, "--json"], wheel.work, wheel.env).stdout)
    assert results["accuracy"] > 0.9
    # The job itself ran the new venv's python (so the installed package), not the repository's venv.
    scripts = [path for path in Path(status["run_dir"]).rglob("*") if path.suffix in (".sh", ".sbatch")]
    assert scripts and all(str(wheel.venv / "bin" / "python") in path.read_text() for path in scripts), scripts
