"""End to end through the installed `hpc-train` console script, as a user types it.

Every command runs in a fresh working directory with its own registry (HPC_TRAIN_HOME) and HOME;
jobs go to `--executor local` (submitit on this machine), never to a SLURM cluster that may be up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from support import REPO

from hpc_train.cli.main import VERBS
from hpc_train.spec import load_spec

HPC_TRAIN = Path(sys.executable).parent / "hpc-train"
STATUS_KEYS = {"id", "name", "status", "progress", "eta", "executor", "scheduler_id", "run_dir"}
# Launcher variables of an enclosing job would make the worker think it is one rank of that job.
LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "TORCHELASTIC_")
LAUNCHER_NAMES = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                  "HPC_TRAIN_HOME", "HPC_TRAIN_TEMPLATES"}


@dataclass
class User:
    """A shell session: a working directory, a registry and a HOME of its own."""

    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # Output goes to files, as with `> out.txt`: through a pipe, `submit --executor local` would not
        # return until the job ends (see test_submit_through_a_pipe_returns_before_the_job_ends).
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run([str(HPC_TRAIN), *args], check=False, cwd=self.cwd, env=self.env,
                                  stdout=out, stderr=err, timeout=timeout).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(args, code, out.read(), err.read())
        # a failed job's own traceback may follow "hpc-train: error: ..."; the CLI itself never crashes
        crashed = "Traceback (most recent call last)" in proc.stderr and \
            not proc.stderr.startswith("hpc-train: error: ")
        assert not crashed, f"hpc-train {' '.join(args)} crashed:\n{proc.stderr}"
        return proc

    def ok(self, *args: str, timeout: float = 180) -> str:
        proc = self(*args, timeout=timeout)
        assert proc.returncode == 0, f"hpc-train {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        return proc.stdout

    def submit(self, spec: Path, *extra: str) -> str:
        out = self.ok("submit", str(spec), "--executor", "local", *extra)
        return out.split()[-1]

    def write(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.write_text(text)
        return path


@pytest.fixture
def user(tmp_path: Path) -> User:
    if not HPC_TRAIN.exists():
        pytest.fail(f"console script {HPC_TRAIN} missing: pip install -e . in this environment")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(LAUNCHER_PREFIXES) and k not in LAUNCHER_NAMES}
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    env.update({"HOME": str(tmp_path / "home"), "HPC_TRAIN_HOME": str(tmp_path / "registry"),
                "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    return User(tmp_path / "work", env)


# -- help and the door


def test_cli_start_does_not_import_the_heavy_stack() -> None:
    """Every command starts in well under a second: torch, scikit-learn, submitit load only when used."""
    code = ("import sys, hpc_train.cli.main as m; m.build_parser(); "
            "heavy = {'torch', 'sklearn', 'submitit', 'h5py'}; "
            "print(sorted({k.split('.')[0] for k in sys.modules} & heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=True)
    assert proc.stdout.strip() == "[]"



@pytest.mark.parametrize("verb", [None, *VERBS])
def test_help(verb: str | None, user: User) -> None:
    out = user.ok(*([verb] if verb else []), "--help")
    assert out.startswith("usage: hpc-train" + (f" {verb}" if verb else ""))


def test_validate_prints_the_resolved_spec(user: User) -> None:
    config = REPO / "configs" / "quickstart.yaml"
    out = user.ok("validate", str(config))
    assert out.rstrip().endswith(f"# {config}: valid")
    shown = yaml.safe_load(out)
    assert shown["name"] == load_spec(config).name
    assert shown["resources"]["memory"] == load_spec(config).resources.memory
    assert user.ok("validate", "-q", str(config)) == ""


def test_validate_bad_spec_exits_2(user: User) -> None:
    spec = user.write("bad.yaml", "name: t\nmodel: {type: random_forest}\nresources: {memory: 8XB}\n")
    proc = user("validate", str(spec))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"hpc-train: error: {spec}: resources.memory:")


@pytest.mark.parametrize("config", sorted(p.stem for p in (REPO / "configs").glob("*.yaml")))
def test_render_writes_script_and_definition(config: str, user: User) -> None:
    spec = load_spec(REPO / "configs" / f"{config}.yaml")
    out_dir = user.cwd / "rendered"
    printed = [Path(line) for line in user.ok("render", str(REPO / "configs" / f"{config}.yaml"), "-o",
                                              "rendered").split()]
    expected = [out_dir / "job.sbatch"] + ([out_dir / "apptainer.def"] if spec.container else [])
    assert printed == expected
    for path in printed:
        assert path.is_file() and path.stat().st_size > 0
    script = (out_dir / "job.sbatch").read_text()
    assert subprocess.run(["bash", "-n", str(out_dir / "job.sbatch")], check=False).returncode == 0
    assert f"--spec {out_dir / 'spec.yaml'}" in script
    assert load_spec(out_dir / "spec.yaml").name == spec.name, "the run dir holds the resolved spec"
    assert os.access(out_dir / "job.sbatch", os.X_OK)


# -- scikit-learn families: run, submit, wait, results, status

FAMILIES = {
    "random_forest": ("{n_estimators: 60}", 0.9),
    "svm": ("{}", 0.85),
    "gradient_boosting": ("{n_estimators: 30, max_depth: 3}", 0.85),
    "logistic_regression": ("{}", 0.85),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sklearn_family_run_submit_wait_results(family: str, user: User) -> None:
    hyperparameters, threshold = FAMILIES[family]
    spec = user.write(f"{family}.yaml", f"name: e2e-{family}\nmodel:\n  type: {family}\n"
                                        f"  hyperparameters: {hyperparameters}\n"
                                        "data: {train_path: 'sklearn:digits'}\ntraining: {seed: 1}\n")
    submitted = user.ok("submit", str(spec), "--executor", "local")
    job_id = submitted.split()[-1]
    assert submitted.strip().endswith(f"job id: {job_id}")

    ran = json.loads(user.ok("run", str(spec), "--json"))  # trains here while the submitted job runs
    assert ran["model"] == family and ran["accuracy"] > threshold
    assert (user.cwd / "runs" / f"e2e-{family}" / "results.json").is_file()

    waited = user("wait", job_id, "--timeout", "300")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert waited.stdout.split() == [job_id, "completed"]

    results = json.loads(user.ok("results", job_id, "--json"))
    assert results["accuracy"] > threshold
    assert results["accuracy"] == pytest.approx(ran["accuracy"]), "same spec, same seed, same result"
    assert results["n_train"] + results["n_val"] == ran["n_train"] + ran["n_val"]

    status = json.loads(user.ok("status", job_id, "--json"))
    assert STATUS_KEYS <= set(status)
    assert status["id"] == job_id and status["name"] == f"e2e-{family}"
    assert status["status"] == "completed" and status["executor"] == "local"
    assert status["progress"] == 1.0 and status["eta"] == "0s"
    assert status["scheduler_id"] and Path(status["run_dir"]).is_dir()
    assert Path(status["run_dir"]).parent == user.cwd / "runs"


def test_failing_job_shows_its_traceback(user: User) -> None:
    # a real failure at fit time: the hyperparameters pass validation, the data does not fit them
    spec = user.write("boom.yaml", "name: boom\nmodel: {type: svm, hyperparameters: {kernel: precomputed}}\n")
    job_id = user.submit(spec)
    waited = user("wait", job_id, "--timeout", "300")
    assert waited.returncode == 1
    assert waited.stdout.split() == [job_id, "failed"]

    shown = user.ok("status", job_id)
    assert "failed" in shown
    assert "Traceback (most recent call last):" in shown
    assert "ValueError: Precomputed matrix must be a square matrix" in shown.splitlines()[-1]

    status = json.loads(user.ok("status", job_id, "--json"))
    assert status["status"] == "failed" and status["error"].startswith("ValueError")
    assert status["traceback"][-1].startswith("ValueError")

    results = user("results", job_id)
    assert results.returncode == 2 and "has no results; it is failed" in results.stderr


def test_broken_model_factory_fails_the_job(user: User) -> None:
    if not (REPO / "hpc_train" / "runtime" / "torch_runner.py").exists():
        pytest.skip("torch trainer not ready")
    spec = user.write("broken.yaml", "name: broken\nmodel: {type: 'tests.cli.fixtures:broken'}\n"
                                     "training: {epochs: 1}\ndistributed: {strategy: none}\n")
    job_id = user.submit(spec)
    assert user("wait", job_id, "--timeout", "300").returncode != 0
    shown = user.ok("status", job_id).splitlines()
    assert shown[-1] == "RuntimeError: this model factory is broken on purpose"  # tests/cli/fixtures.py
    assert any(line.strip().startswith('File "') and "fixtures.py" in line for line in shown), shown


def test_submit_through_a_pipe_returns_before_the_job_ends(user: User) -> None:
    spec = user.write("slow.yaml", "name: slow\nmodel: {type: svm}\n")  # a few seconds of work
    started = time.monotonic()
    proc = subprocess.run([str(HPC_TRAIN), "submit", str(spec), "--executor", "local"], check=False,
                          cwd=user.cwd, env=user.env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - started
    job_id = proc.stdout.split()[-1]
    status = json.loads(user.ok("status", job_id, "--json"))["status"]
    user("cancel", job_id)
    assert status in ("pending", "running"), f"submit returned after {took:.1f}s, when the job was {status}"


def test_submit_dry_run_prints_and_creates_nothing(user: User) -> None:
    config = REPO / "configs" / "quickstart.yaml"
    before = sorted(user.cwd.rglob("*"))
    out = user.ok("submit", str(config), "--executor", "local", "--dry-run")
    assert "executor: local" in out
    command = next(line for line in out.splitlines() if line.startswith("command: "))
    assert "-m hpc_train.runtime.worker --spec" in command and "--run-dir" in command
    run_dir = Path(next(line for line in out.splitlines() if line.startswith("run_dir: ")).split(": ", 1)[1])
    assert not run_dir.exists()
    assert sorted(user.cwd.rglob("*")) == before
    assert json.loads(user.ok("list", "--json")) == []


@pytest.mark.parametrize("verb", ["status", "wait", "results", "logs", "cancel"])
def test_unknown_job_id_exits_2(verb: str, user: User) -> None:
    proc = user(verb, "nosuchjob")
    assert proc.returncode == 2
    assert "no job 'nosuchjob'" in proc.stderr and "Traceback" not in proc.stderr


def test_mlp_config_runs(user: User) -> None:
    if not (REPO / "hpc_train" / "runtime" / "torch_runner.py").exists():
        pytest.skip("torch trainer not ready")
    results = json.loads(user.ok("run", str(REPO / "configs" / "mlp.yaml"), "--json", "--run-dir", "mlp-run",
                                 timeout=300))
    assert results["model"] == "neural_network"
    assert results["accuracy"] > 0.9


def test_resume_from_on_the_command_line_starts_from_another_runs_checkpoint(user: User) -> None:
    spec = user.write("mlp.yaml", "name: warm\nmodel: {type: neural_network, hidden_sizes: [16]}\n"
                                  "data: {train_path: 'sklearn:iris', batch_size: 16}\n"
                                  "training: {epochs: 2, learning_rate: 0.05}\n")
    first = json.loads(user.ok("run", str(spec), "--json", "--run-dir", "first"))
    # another learning rate: another run, whose own checkpoint.dir would refuse the first's files;
    # --resume-from (relative to this folder) asks for them explicitly
    warm = json.loads(user.ok("run", str(spec), "--json", "--run-dir", "second", "--set", "training.learning_rate=0.01",
                              "--resume-from", "first/checkpoints"))
    assert warm["warm_started_from"].startswith(str(user.cwd / "first" / "checkpoints"))
    assert warm["resumed_from_step"] is None and warm["epochs_run"] == 2
    assert warm["param_digests"] != first["param_digests"]
    proc = user("run", str(spec), "--resume-from", "nowhere")
    assert proc.returncode == 2 and "checkpoint.resume_from" in proc.stderr and "no such checkpoint" in proc.stderr
    assert proc.stderr.count("\n") <= 2, proc.stderr
