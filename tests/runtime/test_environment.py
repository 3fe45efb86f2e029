"""Cluster environment detection from launcher variables (pure: patched environment mappings)."""

from __future__ import annotations

import pytest

from hpc_train.commands import CommandResult
from hpc_train.errors import CommandError, SchedulerUnavailable
from hpc_train.runtime.environments import (
    OpenMPIEnvironment,
    SingleProcessEnvironment,
    SlurmEnvironment,
    TorchrunEnvironment,
    detect_environment,
    expand_nodelist,
)
from hpc_train.runtime.environments import slurm as slurm_module

SLURM_STEP = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_NTASKS": "8",
              "SLURM_LOCALID": "1", "SLURM_NODEID": "2", "SLURM_JOB_NODELIST": "gpu[07-10]"}
OMPI = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_COMM_WORLD_NODE_RANK": "1", "OMPI_MCA_orte_num_nodes": "1",
        "OMPI_MCA_ess_base_jobid": "1906835457"}
TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "GROUP_RANK": "1", "MASTER_ADDR": "node1",
            "MASTER_PORT": "29400", "TORCHELASTIC_RUN_ID": "x"}


@pytest.fixture
def no_scontrol(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(argv: list[str], **kwargs: object) -> CommandResult:
        raise SchedulerUnavailable("scontrol not found")

    monkeypatch.setattr("hpc_train.commands.run_command", missing)


def test_empty_environment_is_a_single_process() -> None:
    env = detect_environment({})
    assert isinstance(env, SingleProcessEnvironment)
    assert (env.world_size, env.global_rank, env.local_rank, env.node_rank) == (1, 0, 0, 0)
    assert (env.main_address, env.main_port) == ("127.0.0.1", 29500)


def test_slurm_step(no_scontrol: None) -> None:
    env = detect_environment(SLURM_STEP)
    assert isinstance(env, SlurmEnvironment)
    assert (env.world_size, env.global_rank, env.local_rank, env.node_rank) == (8, 5, 1, 2)
    assert env.main_address == "gpu07"
    assert env.main_port == 10000 + 4242 % 20000


def test_slurm_main_address_asks_scontrol(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(argv: list[str], **kwargs: object) -> CommandResult:
        seen.append(list(argv))
        return CommandResult(list(argv), 0, "gpu07\ngpu08\n", "")

    monkeypatch.setattr("hpc_train.commands.run_command", fake)
    assert SlurmEnvironment(SLURM_STEP).main_address == "gpu07"
    assert seen == [["scontrol", "show", "hostnames", "gpu[07-10]"]]


def test_slurm_falls_back_to_parsing_when_scontrol_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(argv: list[str], **kwargs: object) -> CommandResult:
        raise CommandError(list(argv), 1, "slurm_load_partitions: Unable to contact slurm controller")

    monkeypatch.setattr("hpc_train.commands.run_command", failing)
    assert slurm_module.first_host("login1,gpu[3-4]") == "login1"


def test_slurm_batch_script_is_not_a_step() -> None:
    batch = {k: v for k, v in SLURM_STEP.items() if k != "SLURM_STEP_ID"}
    assert not SlurmEnvironment.detect(batch)
    assert isinstance(detect_environment(batch), SingleProcessEnvironment)


def test_mpirun_inside_an_allocation_is_openmpi_not_slurm() -> None:
    # mpirun's daemons are one srun task per node: their SLURM_NTASKS is the node count.
    env = detect_environment({**SLURM_STEP, "SLURM_NTASKS": "2", **OMPI, "OMPI_COMM_WORLD_SIZE": "8"})
    assert isinstance(env, OpenMPIEnvironment)
    assert env.world_size == 8


def test_srun_with_pmix_is_slurm() -> None:
    env = detect_environment({**SLURM_STEP, **OMPI, "OMPI_COMM_WORLD_SIZE": "8"})
    assert isinstance(env, SlurmEnvironment)


def test_overrides_win_for_slurm() -> None:
    env = SlurmEnvironment({**SLURM_STEP, "HPC_TRAIN_MAIN_ADDR": "10.0.0.5", "MASTER_PORT": "1234"})
    assert (env.main_address, env.main_port) == ("10.0.0.5", 1234)


def test_openmpi() -> None:
    env = detect_environment(OMPI)
    assert isinstance(env, OpenMPIEnvironment)
    assert (env.world_size, env.global_rank, env.local_rank) == (2, 1, 1)
    # OMPI_COMM_WORLD_NODE_RANK is 1 here (a per-node rank), but both ranks are on node 0.
    assert env.node_rank == 0
    assert env.main_address == "127.0.0.1"
    assert env.main_port == 10000 + 1906835457 % 20000


def test_openmpi_node_rank_on_several_nodes() -> None:
    env = OpenMPIEnvironment({**OMPI, "OMPI_MCA_orte_num_nodes": "2", "OMPI_COMM_WORLD_SIZE": "8",
                              "OMPI_COMM_WORLD_RANK": "6", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert env.node_rank == 1


def test_openmpi_port_is_the_same_on_every_rank_and_differs_between_jobs() -> None:
    ports = {OpenMPIEnvironment({**OMPI, "OMPI_COMM_WORLD_RANK": str(r)}).main_port for r in range(2)}
    assert len(ports) == 1
    other = OpenMPIEnvironment({**OMPI, "OMPI_MCA_ess_base_jobid": "1906835458"}).main_port
    assert other not in ports
    assert all(10000 <= p < 30000 for p in ports | {other})


def test_openmpi_main_address_override() -> None:
    env = OpenMPIEnvironment({**OMPI, "MASTER_ADDR": "head", "MASTER_PORT": "2222"})
    assert (env.main_address, env.main_port) == ("head", 2222)
    env = OpenMPIEnvironment({**OMPI, "MASTER_ADDR": "head", "HPC_TRAIN_MAIN_ADDR": "node9"})
    assert env.main_address == "node9"


def test_torchrun_wins_over_slurm() -> None:
    env = detect_environment({**SLURM_STEP, **TORCHRUN})
    assert isinstance(env, TorchrunEnvironment)
    assert (env.world_size, env.global_rank, env.local_rank, env.node_rank) == (4, 3, 1, 1)
    assert (env.main_address, env.main_port) == ("node1", 29400)


def test_partial_torch_variables_are_not_torchrun() -> None:
    assert not TorchrunEnvironment.detect({"MASTER_ADDR": "x", "MASTER_PORT": "1"})


@pytest.mark.parametrize(("nodelist", "hosts"), [
    ("node1", ["node1"]),
    ("gpu[07-10]", ["gpu07", "gpu08", "gpu09", "gpu10"]),
    ("a[1,3-4]b,login2", ["a1b", "a3b", "a4b", "login2"]),
    ("c[098-101]", ["c098", "c099", "c100", "c101"]),
])
def test_expand_nodelist(nodelist: str, hosts: list[str]) -> None:
    assert expand_nodelist(nodelist) == hosts


def test_describe_names_the_environment() -> None:
    described = SingleProcessEnvironment({}).describe()
    assert described["environment"] == "singleprocess"
    assert described["world_size"] == 1
