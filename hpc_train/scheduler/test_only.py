"""Ask SLURM whether it would take a job, without queueing it: `sbatch --test-only`.

SLURM checks the partition, account, QOS, GPUs (GRES), features, node counts, memory and time
limits against its own configuration; a refusal becomes one SpecError naming the spec key that
caused it (where SLURM's words say which), the value, and what this cluster offers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hpc_train.commands import run_command
from hpc_train.errors import CommandError, SchedulerUnavailable, SpecError
from hpc_train.spec import JobSpec

TEST_ONLY_TIMEOUT_S = 30


@dataclass(frozen=True)
class PartitionInfo:
    """What `sinfo` says about one partition's nodes (the largest node where they differ)."""

    name: str
    nodes: int
    cpus: int
    memory_mb: int
    gres: str
    max_time: str
    default: bool


SINFO_PARTITIONS = ["sinfo", "-h", "-o", "%P|%D|%c|%m|%G|%l"]
_GPUS = re.compile(r"gpu(?::[^:,(]+)?:(\d+)")


def partitions() -> dict[str, PartitionInfo]:
    """The cluster's partitions from one `sinfo` call; empty when sinfo cannot answer."""
    try:
        return parse_partitions(run_command(SINFO_PARTITIONS, timeout=20).stdout)
    except (CommandError, SchedulerUnavailable):
        return {}


def parse_partitions(text: str) -> dict[str, PartitionInfo]:
    """Partitions from the output of SINFO_PARTITIONS (one line per partition and node state)."""
    found: dict[str, PartitionInfo] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6:
            continue
        name, nodes, cpus, memory, gres, max_time = fields
        info = PartitionInfo(name.rstrip("*"), _int(nodes), _int(cpus), _int(memory), gres, max_time,
                             name.endswith("*"))
        old = found.get(info.name)
        if old is not None:  # one line per node state: add nodes, keep the largest node
            info = PartitionInfo(info.name, old.nodes + info.nodes, max(old.cpus, info.cpus),
                                 max(old.memory_mb, info.memory_mb), old.gres if old.gres != "(null)" else info.gres,
                                 info.max_time, info.default or old.default)
        found[info.name] = info
    return found


def gpus_per_node(gres: str) -> int:
    """GPUs a node offers from sinfo's GRES column: `gpu:a100:4(S:0-1),gpu:2` -> 6; `(null)` -> 0."""
    return sum(int(count) for count in _GPUS.findall(gres))


def _int(text: str) -> int:
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else 0


def partition_of(spec: JobSpec, known: dict[str, PartitionInfo]) -> PartitionInfo | None:
    """The partition a spec would run in: its own, else the cluster's default."""
    name = spec.resources.partition
    if name is not None:
        return known.get(name)
    return next((p for p in known.values() if p.default), None)


def partitions_hint(known: dict[str, PartitionInfo]) -> str:
    return "partitions on this cluster: " + (", ".join(sorted(known)) or "(sinfo gave none)")


# -- what a refusal means: SLURM's words -> the spec key, its value, and a hint


Blame = tuple[str, object, str]  # key, value, hint


def _partition(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    return "resources.partition", spec.resources.partition, partitions_hint(known)


def _account(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    return ("resources.account", spec.resources.account,
            "check resources.account; `sacctmgr show assoc user=$USER` lists yours")


def _qos(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    return ("resources.qos", spec.resources.qos,
            "check resources.qos; `sacctmgr show assoc user=$USER format=account,partition,qos` lists yours")


def _gpus(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    offered = ", ".join(f"{p.name}: {p.gres if p.gres != '(null)' else 'none'}" for p in known.values())
    return ("resources.gpus_per_node", spec.resources.gpus_per_node,
            (f"GPUs (GRES) per partition: {offered or '(sinfo gave none)'}; choose a GPU partition "
            "(resources.partition) or set resources.gpus_per_node: 0"))


def _time(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    limits = ", ".join(f"{p.name}: {p.max_time}" for p in known.values())
    return ("resources.time", spec.resources.time_slurm,
            f"time limits per partition: {limits or '(sinfo gave none)'}; lower resources.time or pick another partition")


def _constraint(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    return ("resources.constraint", spec.resources.constraint,
            "`sinfo -o '%P %f'` lists the features each partition's nodes have")


def _node_configuration(spec: JobSpec, known: dict[str, PartitionInfo]) -> Blame:
    """'Requested node configuration is not available': find which request exceeds the partition."""
    r = spec.resources
    part = partition_of(spec, known)
    if part is None:
        return ("resources", (f"nodes={r.nodes} tasks_per_node={r.tasks_per_node} cpus_per_task={r.cpus_per_task} "
                f"memory={r.memory}M"), "`sinfo -o '%P %D %c %m %G'` shows what each partition's nodes have")
    where = f"partition {part.name} has {part.nodes} nodes of {part.cpus} CPUs and {part.memory_mb} MB"
    excess: list[tuple[bool, str, object]] = [
        (r.nodes > part.nodes, "resources.nodes", r.nodes),
        (r.tasks_per_node * r.cpus_per_task > part.cpus, "resources.cpus_per_task",
         f"{r.cpus_per_task} (x {r.tasks_per_node} tasks per node)"),
        (r.memory > part.memory_mb > 0, "resources.memory", f"{r.memory}M"),
    ]
    for exceeded, key, value in excess:
        if exceeded:
            return key, value, where
    return "resources", f"nodes={r.nodes} cpus_per_task={r.cpus_per_task} memory={r.memory}M", where


# lower-case fragment of SLURM's message -> who is to blame; the first that matches wins
REFUSALS: list[tuple[str, Callable[[JobSpec, dict[str, PartitionInfo]], Blame]]] = [
    ("invalid partition", _partition),
    ("invalid account", _account),
    ("invalid qos", _qos),
    ("job's qos not permitted", _qos),
    ("generic resource", _gpus),
    ("gres", _gpus),
    ("time limit", _time),
    ("invalid feature", _constraint),
    ("node configuration is not available", _node_configuration),
    ("node count specification invalid", _node_configuration),
    ("memory specification", _node_configuration),
]


def explain_refusal(spec: JobSpec, said: str, known: dict[str, PartitionInfo] | None = None) -> SpecError:
    """A SpecError for what `sbatch --test-only` said, naming the key where SLURM's words allow it."""
    reason = "SLURM would refuse this job: " + "; ".join(
        line.strip() for line in said.splitlines() if line.strip()) if said.strip() else "SLURM refused the job"
    lower = said.lower()
    for fragment, blame in REFUSALS:
        if fragment in lower:
            key, value, hint = blame(spec, partitions() if known is None else known)
            return SpecError(reason, key=key, value=value, hint=hint)
    return SpecError(reason, key="resources", hint="`sbatch --test-only SCRIPT` shows SLURM's answer; "
                                                   "`hpc-train render` writes the script")


def test_only(spec: JobSpec, script: str) -> None:
    """Run `sbatch --test-only` on a rendered script (stdin); raise SpecError when SLURM would refuse it.

    Nothing is queued (SLURM only checks; it may use up a job id). An unreachable controller is
    left to the submission itself, which reports it with its own hint. The script's dependency is
    left out: this check is about resources, and with `kill_invalid_depend` SLURM answers a job whose
    dependency has failed with "Requested operation is presently disabled" (check_dependency says
    that in words).
    """
    script = without_dependency(script)
    try:
        result = run_command(["sbatch", "--test-only"], input=script, timeout=TEST_ONLY_TIMEOUT_S, check=False)
    except CommandError:  # timed out: the submission will say what is wrong with the controller
        return
    if result.returncode != 0:
        said = result.stderr + result.stdout
        from hpc_train.scheduler.slurm import is_unreachable

        if is_unreachable(said):
            return
        raise explain_refusal(spec, said)


_DEPENDENCY_LINE = re.compile(r"^#SBATCH\s+(?:--dependency|-d)\b.*\n?", re.MULTILINE)


def without_dependency(script: str) -> str:
    """The script without its `#SBATCH --dependency` line."""
    return _DEPENDENCY_LINE.sub("", script)
