"""Preemption without a scheduler, as a user meets it: `hpc-train run` and `hpc-train submit --executor
local` checkpoint on SIGUSR1 or SIGTERM at the next step, and running again resumes to parameters bitwise
equal to an uninterrupted run; a first run with no checkpoint to resume starts from scratch. Below the CLI:
the stop lands exactly at a batch (inside an epoch, or on its last batch) and the resume continues there;
PreemptionGuard.ignore() keeps a late signal from killing a finished process.

One rank, one thread: configs/mlp.yaml's MLP widened to 256x256 with batch 16 (90 steps an epoch,
about 0.2 s here), 8 epochs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from support import wait_until as support_wait_until
from torch.utils.data import DataLoader, TensorDataset

from hpc_train.checkpoint import HDF5CheckpointStore
from hpc_train.models.mlp import MLP
from hpc_train.runtime import DistributedTrainer
from hpc_train.runtime.environments import SingleProcessEnvironment
from hpc_train.runtime.preemption import PreemptionGuard

pytestmark = pytest.mark.checkpoint

REPO = Path(__file__).resolve().parents[2]
HPC_TRAIN = str(REPO / ".venv" / "bin" / "hpc-train")
SPEC = REPO / "configs" / "mlp.yaml"
EPOCHS = 8
STEPS_PER_EPOCH = 90  # ceil(1437 training samples / batch 16)
TRAINING = [f"training.epochs={EPOCHS}", "training.early_stopping=null", "model.hidden_sizes=[256,256]",
            "data.batch_size=16", "checkpoint.keep_last=100", "resources.cpus_per_task=1"]
PREEMPTED_EXIT_CODE = 3


def sets(overrides: Sequence[str]) -> list[str]:
    return [word for item in overrides for word in ("--set", item)]


def env() -> dict[str, str]:
    """No SLURM variables: outside a job nothing may try `scontrol requeue`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def run_argv(home: Path, run_dir: Path, *overrides: str, verbose: bool = False) -> list[str]:
    return [HPC_TRAIN, "--home", str(home), *(["-v"] if verbose else []), "run", str(SPEC),
            *sets([*TRAINING, *overrides]), "--run-dir", str(run_dir), "--json"]


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HPC_TRAIN, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env(),
                          check=False)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    support_wait_until(condition, timeout, what, poll=0.05)  # signals are aimed within an epoch of ~0.2 s


def epochs_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


def status(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "status.json").read_text())


def latest_checkpoint(directory: Path) -> tuple[int, dict[str, Any]]:
    checkpoint = HDF5CheckpointStore(directory, keep_last=None).load()
    assert checkpoint is not None, f"no checkpoint in {directory}"
    return checkpoint.step, checkpoint.meta


class Reference:
    """The uninterrupted `hpc-train run`, started at once and waited for when first needed."""

    def __init__(self, home: Path, run_dir: Path) -> None:
        self.proc = subprocess.Popen(run_argv(home, run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env())
        self._results: dict[str, Any] | None = None

    def results(self) -> dict[str, Any]:
        if self._results is None:
            out, err = self.proc.communicate(timeout=180)
            assert self.proc.returncode == 0, err
            self._results = json.loads(out)
        return self._results

    def digests(self) -> list[str]:
        return list(self.results()["param_digests"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    root = tmp_path_factory.mktemp("reference")
    ref = Reference(root / "home", root / "run")
    yield ref
    if ref.proc.poll() is None:
        ref.proc.kill()
        ref.proc.wait()


# -- hpc-train run -----------------------------------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["SIGUSR1", "SIGTERM"])
def test_run_checkpoints_on_signal_and_the_same_command_resumes_bitwise(
        signum: signal.Signals, reference: Reference, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = run_argv(tmp_path / "home", run_dir, verbose=True)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        wait_until(lambda: len(epochs_logged(run_dir)) >= 1 or proc.poll() is not None, 120, "the first epoch")
        time.sleep(0.1)  # part-way into epoch 2
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == PREEMPTED_EXIT_CODE, f"exit {proc.returncode}\n{err}"
    assert json.loads(out)["preempted"] is True
    assert "rerun the same command to resume" in err
    record = status(run_dir)
    assert record["status"] == "preempted" and record["preempted_by"] == signum.name, record
    assert not (run_dir / "results.json").exists()
    step, meta = latest_checkpoint(run_dir / "checkpoints")
    assert meta["reason"] == "preempted" and meta["epoch"] >= 1 and step == meta["epoch"] * STEPS_PER_EPOCH + meta["batch"]
    stopped_at = len(epochs_logged(run_dir))
    assert stopped_at < EPOCHS, "the signal came too late to test anything"

    again = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env(), check=False)
    assert again.returncode == 0, again.stderr
    # It went on from the very batch where the signal stopped it.
    assert f"resumed from checkpoint at step {step} (epoch {meta['epoch']}, batch {meta['batch']})" in again.stderr
    results = json.loads(again.stdout)
    assert results["param_digests"] == reference.digests()
    assert results["epochs_run"] == EPOCHS and status(run_dir)["status"] == "completed"
    assert epochs_logged(run_dir) == list(range(1, EPOCHS + 1))  # each epoch once across the two runs


@pytest.mark.timeout(240)
def test_first_run_with_no_checkpoint_starts_from_scratch(reference: Reference, tmp_path: Path) -> None:
    checkpoints = tmp_path / "nothing-here-yet"
    proc = subprocess.run(run_argv(tmp_path / "home", tmp_path / "run", f"checkpoint.dir={checkpoints}", verbose=True),
                          capture_output=True, text=True, timeout=180, env=env(), check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert results["epochs_run"] == EPOCHS and results["restarts"] == 0
    assert "resumed from checkpoint" not in proc.stderr and "skipping checkpoint" not in proc.stderr
    assert results["param_digests"] == reference.digests()
    step, meta = latest_checkpoint(checkpoints)  # the run created the folder and checkpointed into it
    assert meta["reason"] == "final" and step == EPOCHS * STEPS_PER_EPOCH


@pytest.mark.timeout(240)
def test_step_interval_checkpoints_mid_epoch_and_a_crash_resumes_from_the_last_one(
        reference: Reference, tmp_path: Path) -> None:
    """checkpoint.unit steps: a checkpoint every 40 optimizer steps, most of them inside an epoch (90
    steps each). A crash after step 400 (all later files gone) resumes there, at batch 40 of epoch 5."""
    run_dir, checkpoints = tmp_path / "run", tmp_path / "checkpoints"
    argv = run_argv(tmp_path / "home", run_dir, "checkpoint.unit=steps", "checkpoint.interval=40",
                    f"checkpoint.dir={checkpoints}", verbose=True)
    first = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env(), check=False)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["param_digests"] == reference.digests()  # checkpointing changed nothing
    store = HDF5CheckpointStore(checkpoints, keep_last=None)
    total = EPOCHS * STEPS_PER_EPOCH
    assert store.steps() == [*range(40, total, 40), total]  # every 40 steps, then the final one
    metas = {step: store.load(store.path_for(step)).meta for step in (40, 400)}  # type: ignore[union-attr]
    assert metas[40]["reason"] == "interval" and (metas[40]["epoch"], metas[40]["batch"]) == (0, 40)
    assert (metas[400]["epoch"], metas[400]["batch"]) == (4, 40)

    for step in store.steps():  # the "crash": nothing after step 400 reached the disk
        if step > 400:
            store.path_for(step).unlink()
    (run_dir / "results.json").unlink()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env(), check=False)
    assert again.returncode == 0, again.stderr
    assert "resumed from checkpoint at step 400 (epoch 4, batch 40)" in again.stderr
    assert json.loads(again.stdout)["param_digests"] == reference.digests()
    # Epochs 5-8 ran twice; metrics.jsonl keeps the second run's lines only, each epoch once.
    assert epochs_logged(run_dir) == list(range(1, EPOCHS + 1))


# -- hpc-train submit --executor local -------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def worker_pid(controller: int) -> int | None:
    for pid in descendants(controller):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hpc_train.runtime.worker" in cmdline:
            return pid
    return None


@pytest.mark.timeout(240)
def test_local_executor_job_checkpoints_on_signal_and_resubmission_resumes_bitwise(
        reference: Reference, tmp_path: Path) -> None:
    """Each submission gets a new run directory, so both name the same checkpoint.dir to resume from it.

    The local executor's job id is its controller's pid; the signal goes to the rank below it (the worker
    process), as a batch system would send it.
    """
    home, checkpoints = tmp_path / "home", tmp_path / "checkpoints"
    argv: list[str | Path] = ["--home", home, "submit", SPEC, "--executor", "local",
            *sets([*TRAINING, f"checkpoint.dir={checkpoints}", f"output_dir={tmp_path / 'runs'}"])]

    def submit() -> tuple[str, dict[str, Any]]:
        proc = cli(*argv)
        assert proc.returncode == 0, proc.stderr
        job_id = proc.stdout.split()[-1]
        shown = cli("--home", home, "status", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        return job_id, json.loads(shown.stdout)

    first, summary = submit()
    run_dir, controller = Path(summary["run_dir"]), int(summary["scheduler_id"])
    wait_until(lambda: len(epochs_logged(run_dir)) >= 1, 120, "the first epoch")
    pid = worker_pid(controller)
    assert pid is not None, f"no worker process below the controller {controller}"
    os.kill(pid, signal.SIGUSR1)
    wait_until(lambda: json.loads(cli("--home", home, "status", first, "--json").stdout)["status"] == "preempted",
               60, "the job to show as preempted")
    assert status(run_dir)["preempted_by"] == "SIGUSR1"
    _, meta = latest_checkpoint(checkpoints)
    assert meta["reason"] == "preempted" and meta["epoch"] >= 1
    assert cli("--home", home, "results", first).returncode != 0  # preempted: no results yet

    second, summary = submit()
    assert Path(summary["run_dir"]) != run_dir
    waited = cli("--home", home, "wait", second, "--timeout", "180", timeout=200)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    results = json.loads(cli("--home", home, "results", second, "--json").stdout)
    assert results["param_digests"] == reference.digests()
    assert results["epochs_run"] == EPOCHS
    # The second run only trained the epochs the first one had not finished.
    assert epochs_logged(Path(summary["run_dir"]))[0] == meta["epoch"] + 1


# -- below the CLI: exact stop positions, and the guard itself -------------------------------------


def toy_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 12, generator=gen)
    return TensorDataset(x, (x @ torch.randn(12, 3, generator=gen)).argmax(1))


def train(store: HDF5CheckpointStore | None, should_stop: Callable[[], bool] | None = None
          ) -> DistributedTrainer:
    torch.manual_seed(0)
    model = MLP(12, [32, 32], 3, dropout=0.2)  # dropout: the RNG streams must be restored too
    trainer = DistributedTrainer(environment=SingleProcessEnvironment({}), checkpoint_store=store,
                                 should_stop=should_stop, optimizer="adam", learning_rate=0.01)
    trainer.train(model, DataLoader(toy_data(), batch_size=16, shuffle=True), epochs=3,
                  val_loader=DataLoader(toy_data(), batch_size=64))
    return trainer


def numbers(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch records without their timings."""
    return [{k: v for k, v in record.items() if k not in ("duration", "samples_per_s")} for record in history]


@pytest.mark.parametrize("stop_step", [3, 8, 16], ids=["inside-epoch-1", "last-batch-of-epoch-1",
                                                        "last-batch-of-epoch-2"])
def test_resume_continues_at_the_batch_where_the_stop_landed(stop_step: int, tmp_path: Path) -> None:
    """8 steps an epoch. A stop on an epoch's last batch leaves that epoch unfinished (no record yet)."""
    straight = train(None)
    store = HDF5CheckpointStore(tmp_path, keep_last=None)
    calls = iter(range(1, 1000))
    stopped = train(store, should_stop=lambda: next(calls) == stop_step)
    assert stopped.preempted
    checkpoint = store.load()
    assert checkpoint is not None and checkpoint.meta["reason"] == "preempted"
    epoch = (stop_step - 1) // 8
    assert checkpoint.state["progress"] == {"epoch": epoch, "batch": stop_step - 8 * epoch, "step": stop_step,
                                            "stopped_early": False}
    assert len(stopped.history) == epoch
    resumed = train(store)
    assert not resumed.preempted
    assert resumed.param_digest() == straight.param_digest()
    assert numbers(resumed.history) == numbers(straight.history)


def test_guard_flags_signals_and_ignore_keeps_a_late_one_from_killing() -> None:
    original = signal.getsignal(signal.SIGUSR1)
    guard = PreemptionGuard([signal.SIGUSR1])
    try:
        guard.install()
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(guard, 5, "the flag")
        assert guard.signal_name == "SIGUSR1" and guard.installed
        guard.reset()
        guard.ignore()  # the work is done: a notice now must neither kill the process nor set the flag
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN and not guard.installed
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.1)
        assert not guard()
        guard.install()  # and the guard can take the signal back
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_until(guard, 5, "the flag after re-installing")
    finally:
        guard.uninstall()
    assert signal.getsignal(signal.SIGUSR1) == original


@pytest.mark.timeout(120)
def test_a_finished_worker_survives_signals_until_its_last_instant(tmp_path: Path) -> None:
    """What SLURM's time-limit warning does to a rank that has just finished: it must still exit 0.

    USR1 every 2 ms from the moment the worker has its guard (status.json exists) until it is gone. A
    scikit-learn model, so the flag has no step to act on. At interpreter exit CPython resets Python-level
    handlers to SIG_DFL; without PreemptionGuard.ignore() in the worker this ends with -SIGUSR1.
    """
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: late-signal\nmodel: {type: logistic_regression}\ndata: {train_path: 'sklearn:digits'}\n")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-m", "hpc_train.runtime.worker",
                             "--spec", str(spec), "--run-dir", str(run_dir)], stderr=subprocess.PIPE, text=True,
                            env=env())
    try:
        wait_until(lambda: (run_dir / "status.json").exists() or proc.poll() is not None, 60, "the worker")
        sent = 0
        while proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGUSR1)
            except ProcessLookupError:
                break
            sent += 1
            time.sleep(0.002)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    assert sent > 10 and status(run_dir)["status"] == "completed"


def _catches(pid: int, signum: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_worker_catches_a_signal_sent_while_it_is_still_importing(tmp_path: Path) -> None:
    """The rank's first ~0.25 s are imports (pydantic, scikit-learn); a SIGUSR1 then used to kill it."""
    validated = cli("validate", SPEC, *sets([*TRAINING, "training.epochs=2"]))
    assert validated.returncode == 0, validated.stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text(validated.stdout)
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-m", "hpc_train.runtime.worker", "--spec",
                             str(spec), "--run-dir", str(tmp_path / "run")], env=env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent_during_imports = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            if _catches(proc.pid, signal.SIGUSR1):
                sent_during_imports = "_pydantic_core" not in maps  # the spec module not loaded yet
                proc.send_signal(signal.SIGUSR1)
                break
        except (FileNotFoundError, ProcessLookupError):
            break
    _, err = proc.communicate(timeout=120)
    assert sent_during_imports, "the handler came only after the slow imports"
    assert proc.returncode == PREEMPTED_EXIT_CODE, (proc.returncode, err[-2000:])
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "preempted" and status["preempted_by"] == "SIGUSR1", status
    assert HDF5CheckpointStore(tmp_path / "run" / "checkpoints").steps(), "preempted without a checkpoint"
