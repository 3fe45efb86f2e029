"""Where DistributedTrainer writes checkpoints when a user's script asks for an interval but gives no store:
checkpoint_dir, the job's folder inside a job, or a UserError saying how to give one; never silence."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from support import PYTHON, REPO, require
from torch.utils.data import DataLoader

from hpc_train.errors import UserError
from hpc_train.runtime.job_checkpoints import RUN_DIR_VAR, job_checkpoint_place
from hpc_train.spec import dump_spec, parse_spec

SCRIPT = Path(__file__).parent / "workers" / "brief_script.py"
TIMEOUT = 180


def script_env(run_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != RUN_DIR_VAR}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    if run_dir is not None:
        env[RUN_DIR_VAR] = str(run_dir)
    return env


def run_script(args: list[str], run_dir: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, str(SCRIPT), *args], env=script_env(run_dir), cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


def rank_result(out: Path, rank: int = 0) -> dict[str, object]:
    result: dict[str, object] = json.loads((out / f"rank{rank}.json").read_text())
    return result


def checkpoint_steps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ckpt-*.h5"))


def test_outside_a_job_an_interval_without_a_place_is_refused(tmp_path: Path) -> None:
    proc = run_script(["4", str(tmp_path / "out")], None, tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "UserError" in proc.stderr
    assert "checkpoint_interval=2 asks for checkpoints" in proc.stderr
    assert "HINT: DistributedTrainer(checkpoint_dir=" in proc.stderr
    assert RUN_DIR_VAR in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.rglob("*.h5"))


def test_inside_a_job_the_run_directory_gets_the_checkpoints_and_a_rerun_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "mine-1"
    run_dir.mkdir(parents=True)
    first = run_script(["4", str(tmp_path / "first")], run_dir, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = run_dir / "checkpoints"
    assert rank_result(tmp_path / "first")["checkpoint_dir"] == str(folder)
    # interval 2 over 4 epochs: the one at epoch 2 and the final one (6 optimizer steps an
    # epoch: 12 batches, 2 accumulated)
    assert checkpoint_steps(folder) == ["ckpt-000000012.h5", "ckpt-000000024.h5"]
    again = run_script(["6", str(tmp_path / "again")], run_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    result = rank_result(tmp_path / "again")
    assert result["resumed_from"] == 24 and result["epochs"] == [1, 2, 3, 4, 5, 6]


def test_inside_a_job_checkpoint_dir_of_its_spec_wins(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "mine-2"
    run_dir.mkdir(parents=True)
    elsewhere = tmp_path / "scratch" / "ckpt"
    spec = parse_spec({"name": "mine", "model": {"type": "neural_network"},
                       "checkpoint": {"dir": str(elsewhere), "keep_last": 1}})
    (run_dir / "spec.yaml").write_text(dump_spec(spec))
    place = job_checkpoint_place({RUN_DIR_VAR: str(run_dir)})
    assert place is not None and place.directory == elsewhere and place.keep_last == 1
    proc = run_script(["4", str(tmp_path / "out")], run_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert checkpoint_steps(elsewhere) == ["ckpt-000000024.h5"]  # keep_last 1 of the spec
    assert not (run_dir / "checkpoints").exists()


def test_in_process_refusal_and_explicit_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_trainer import data, model, trainer

    monkeypatch.delenv(RUN_DIR_VAR, raising=False)
    assert job_checkpoint_place() is None
    with pytest.raises(UserError, match="nowhere to write"):
        trainer().train(model(), DataLoader(data(), batch_size=32), epochs=2, checkpoint_interval=1)
    with pytest.raises(UserError, match="not both"):
        from hpc_train.checkpoint import HDF5CheckpointStore

        trainer(checkpoint_store=HDF5CheckpointStore(tmp_path / "a"), checkpoint_dir=tmp_path / "b")
    t = trainer(checkpoint_dir=tmp_path / "c")
    t.train(model(), DataLoader(data(), batch_size=32), epochs=2, checkpoint_interval=1)
    assert checkpoint_steps(tmp_path / "c") == ["ckpt-000000008.h5", "ckpt-000000016.h5"]
    # without an interval nothing is refused: no checkpoint asked for, none needed
    trainer().train(model(), DataLoader(data(), batch_size=32), epochs=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun(args: list[str], tmp_path: Path) -> None:
    exe = shutil.which("torchrun", path=str(Path(PYTHON).parent)) or shutil.which("torchrun")
    require(exe is not None, "torchrun not installed")
    assert exe is not None
    argv = [exe, "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
            "--master-port", str(free_port()), str(SCRIPT), *args]
    proc = subprocess.run(argv, env=script_env(None), cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def test_torchrun_two_ranks_six_then_eight_equals_eight_straight(tmp_path: Path) -> None:
    torchrun(["8", str(tmp_path / "straight"), str(tmp_path / "a")], tmp_path)
    torchrun(["6", str(tmp_path / "six"), str(tmp_path / "b")], tmp_path)
    torchrun(["8", str(tmp_path / "eight"), str(tmp_path / "b")], tmp_path)
    straight = [rank_result(tmp_path / "straight", r) for r in (0, 1)]
    six = [rank_result(tmp_path / "six", r) for r in (0, 1)]
    resumed = [rank_result(tmp_path / "eight", r) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in straight + resumed)
    assert all(r["resumed_from"] is None for r in straight + six)
    assert {r["resumed_from"] for r in resumed} == {6 * 3}  # 192 samples / 2 ranks / 16 a batch / 2 accumulated
    assert {r["digest"] for r in resumed} == {straight[0]["digest"]} == {straight[1]["digest"]}
    assert six[0]["digest"] != straight[0]["digest"]  # the rerun really had work left to do
