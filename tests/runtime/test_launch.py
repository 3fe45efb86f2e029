"""mpirun command lines (pure)."""

from __future__ import annotations

import pytest

from hpc_train.runtime.launch import mpirun_command


def test_as_root_adds_allow_run_as_root() -> None:
    cmd = mpirun_command(2, ["python", "train.py"], environ={"PYTHONPATH": "/x"}, euid=0)
    assert cmd == ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2",
                   "-x", "PYTHONPATH", "python", "train.py"]


def test_as_user_or_with_ompi_root_vars_no_flag() -> None:
    assert "--allow-run-as-root" not in mpirun_command(2, ["a"], environ={}, euid=1000)
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    assert "--allow-run-as-root" not in mpirun_command(2, ["a"], environ=env, euid=0)


def test_forwards_only_variables_that_are_set() -> None:
    env = {"OMP_NUM_THREADS": "1", "MASTER_PORT": "1", "MY_VAR": "z"}
    cmd = mpirun_command(4, ["a"], environ=env, euid=1000, forward=["MY_VAR", "ABSENT"])
    pairs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-x"]
    assert pairs == ["OMP_NUM_THREADS", "MASTER_PORT", "MY_VAR"]
    assert cmd[-1] == "a"


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="np"):
        mpirun_command(0, ["a"])
    with pytest.raises(ValueError, match="argv"):
        mpirun_command(1, [])
