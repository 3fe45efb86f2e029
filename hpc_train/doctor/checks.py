"""The checks of `hpc-train doctor`, one small function each, run in the order of CHECKS.

Without a spec a check fails only for something that is installed but broken (sbatch there but the
controller silent, mpirun and mpi4py from different MPIs); absent optional parts (Apptainer,
Horovod, GPUs, SLURM itself on a laptop) are skipped. With a spec, what it needs must be there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from hpc_train.doctor.base import DoctorContext, Outcome, fail, needed, ok, said, skip, warn
from hpc_train.errors import RegistryError
from hpc_train.filesystems import NETWORK_FILESYSTEMS, mount_of
from hpc_train.scheduler.test_only import (
    SINFO_PARTITIONS,
    PartitionInfo,
    gpus_per_node,
    parse_partitions,
    partition_of,
    partitions_hint,
)

NO_CONTROLLER = "skipped: the SLURM controller did not answer (see `SLURM controller`)"

# -- SLURM


def check_slurm_client(ctx: DoctorContext) -> Outcome:
    missing = ctx.slurm_clients_missing
    if not missing:
        return ok("sbatch, squeue, sacct, scontrol, sinfo, srun, scancel on PATH")
    hint = "run hpc-train on a SLURM login node, or put SLURM's commands on PATH (`module load slurm`)"
    if len(missing) < 7:
        return fail(f"missing from PATH: {', '.join(missing)}", hint)
    return needed(ctx.spec_needs_slurm, "no SLURM commands on PATH", hint,
                  "jobs run on this machine: --executor local")


def check_controller(ctx: DoctorContext) -> Outcome:
    if ctx.slurm_clients_missing:
        return skip("skipped: no SLURM client")
    if ctx.controller_said is None:
        conf = os.environ.get("SLURM_CONF")
        return ok("`scontrol ping`: slurmctld is UP" + (f" (SLURM_CONF={conf})" if conf else ""))
    from hpc_train.scheduler.slurm import NO_CONTROLLER_HINT

    return fail(f"`scontrol ping` said: {ctx.controller_said}", NO_CONTROLLER_HINT)


def check_accounting(ctx: DoctorContext) -> Outcome:
    if ctx.slurm_clients_missing:
        return skip("skipped: no SLURM client")
    result = ctx.probe(["sacct", "-n", "-X", "-S", "now-1hours", "-o", "JobID"])
    if isinstance(result, str) or result.returncode != 0:
        return fail(f"`sacct` failed: {result if isinstance(result, str) else said(result)}",
                    "hpc-train reads job states from sacct: the cluster needs AccountingStorageType="
                    "accounting_storage/slurmdbd and a running slurmdbd (`sacctmgr show cluster`)")
    jobs = len(result.stdout.split())
    return ok(f"`sacct` answers ({jobs} job(s) in the last hour)")


def _partitions(ctx: DoctorContext) -> dict[str, PartitionInfo] | str:
    result = ctx.probe(SINFO_PARTITIONS)
    if isinstance(result, str) or result.returncode != 0:
        return result if isinstance(result, str) else said(result)
    return parse_partitions(result.stdout)


def _gpu_text(part: PartitionInfo) -> str:
    count = gpus_per_node(part.gres)
    return f"{count} GPU(s)/node" if count else "no GPUs"


def check_partitions(ctx: DoctorContext) -> Outcome:
    if not ctx.slurm_usable:
        return skip(NO_CONTROLLER if not ctx.slurm_clients_missing else "skipped: no SLURM client")
    found = _partitions(ctx)
    if isinstance(found, str) or not found:
        return fail(f"`sinfo` listed no partitions{': ' + found if isinstance(found, str) else ''}",
                    "ask the cluster's admins which partitions you may use")
    parts = [f"{p.name}{'*' if p.default else ''} ({p.nodes} nodes, {p.cpus} CPUs, {_gpu_text(p)}, max {p.max_time})"
             for p in found.values()]
    return ok("; ".join(parts))


def check_spec_partition(ctx: DoctorContext) -> Outcome:
    if ctx.spec is None:
        return skip("no --spec")
    if not ctx.slurm_usable:
        return needed(ctx.spec_needs_slurm, "cannot ask SLURM", "see the SLURM lines above", "the spec can run locally")
    found = _partitions(ctx)
    if isinstance(found, str):
        return fail(f"`sinfo` failed: {found}", "see the SLURM lines above")
    part = partition_of(ctx.spec, found)
    name = ctx.spec.resources.partition
    if part is None:
        what = f"partition {name!r} is not on this cluster" if name else "the cluster has no default partition"
        return fail(f"resources.partition: {what}", partitions_hint(found))
    r = ctx.spec.resources
    if r.nodes > part.nodes:
        return fail(f"resources.nodes: {r.nodes} nodes asked, partition {part.name} has {part.nodes}",
                    "lower resources.nodes or pick a larger partition")
    return ok(f"partition {part.name}{' (the default)' if not name else ''} exists, {part.nodes} nodes")


def check_spec_gpus(ctx: DoctorContext) -> Outcome:
    if ctx.spec is None or not ctx.spec.resources.gpus_per_node:
        return skip("the spec asks for no GPUs" if ctx.spec is not None else "no --spec")
    asked = ctx.spec.resources.gpus_per_node
    found = _partitions(ctx) if ctx.slurm_usable else "cannot ask SLURM"
    if isinstance(found, str):
        return fail(f"resources.gpus_per_node: {asked} asked; {found}", "see the SLURM lines above")
    part = partition_of(ctx.spec, found)
    if part is None:
        return skip("skipped: no such partition (see above)")
    have = gpus_per_node(part.gres)
    if have < asked:
        with_gpus = [f"{p.name} ({_gpu_text(p)})" for p in found.values() if gpus_per_node(p.gres)]
        return fail(f"resources.gpus_per_node: {asked} asked, partition {part.name} has {_gpu_text(part)} "
                    f"(GRES {part.gres})",
                    "partitions with GPUs: " + (", ".join(with_gpus) or "none on this cluster"))
    return ok(f"partition {part.name} has {have} GPU(s) per node (GRES {part.gres})")


def check_srun_pmix(ctx: DoctorContext) -> Outcome:
    if shutil.which("srun") is None:
        return skip("skipped: no srun")
    result = ctx.probe(["srun", "--mpi=list"])
    if isinstance(result, str):
        return fail(f"`srun --mpi=list` failed: {result}", "check the SLURM installation")
    text = result.stdout + result.stderr
    plugins = [line.strip() for line in text.splitlines() if line.startswith(("\t", " ", "srun: ")) and line.strip()]
    names = [p.removeprefix("srun: ").removeprefix("mpi/").strip() for p in plugins]
    if result.returncode != 0:
        return fail(f"`srun --mpi=list` failed: {said(result) or f'exit {result.returncode}'}",
                    "srun cannot start here: check SLURM's configuration (SLURM_CONF) and the lines above")
    if any(n.split()[0].startswith("pmix") for n in names if n):
        return ok("`srun --mpi=list` has pmix (" + ", ".join(n for n in names if n) + ")")
    return fail(f"`srun --mpi=list` has no pmix: {said(result) or 'no output'}",
                "hpc-train starts ranks with `srun --mpi=pmix` (OpenMPI 4 needs PMIx under srun): install "
                "SLURM's PMIx plugin (Debian: slurm-wlm's mpi/pmix) or ask the cluster's admins")


# -- MPI, Horovod, GPUs, containers

# MPI vendor as its own version strings name it -> the name shown
MPI_VENDORS = {"Open MPI": "Open MPI", "MPICH": "MPICH", "Intel(R) MPI": "Intel MPI", "MVAPICH": "MVAPICH"}
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")


def mpi_identity(text: str) -> tuple[str, str] | None:
    """(vendor, version) from `mpirun --version` or MPI_Get_library_version text; None if unknown."""
    for marker, vendor in MPI_VENDORS.items():
        at = text.find(marker)
        if at >= 0:
            version = _VERSION.search(text, at)
            return vendor, version.group(1) if version else "?"
    return None


_MPI4PY_LIBRARY = ("import mpi4py; mpi4py.rc.initialize = False; mpi4py.rc.finalize = False\n"
                   "from mpi4py import MPI; print(MPI.Get_library_version())")


def check_mpi(ctx: DoctorContext) -> Outcome:
    requires = ctx.spec is not None and ctx.spec.distributed.backend == "mpi"
    hint = "pip install 'hpc-train[mpi]' (mpi4py built against the mpirun on PATH: `pip install --no-binary mpi4py mpi4py`)"
    if shutil.which("mpirun") is None:
        return needed(requires, "no mpirun on PATH", "install OpenMPI (or `module load openmpi`); " + hint,
                      "needed for distributed.backend: mpi and `hpc-train launch`")
    version = ctx.probe(["mpirun", "--version"])
    runner = mpi_identity(version.stdout + version.stderr) if not isinstance(version, str) else None
    if importlib.util.find_spec("mpi4py") is None:
        return needed(requires, f"mpirun is {_name(runner)}; mpi4py not installed", hint,
                      "needed for distributed.backend: mpi")
    library = ctx.python_probe(_MPI4PY_LIBRARY)
    if isinstance(library, str) or library.returncode != 0:
        return fail(f"mpi4py does not load: {library if isinstance(library, str) else said(library)}", hint)
    linked = mpi_identity(library.stdout)
    if runner is None or linked is None or runner != linked:
        return fail(f"mpirun is {_name(runner)} but mpi4py uses {_name(linked)}",
                    "ranks started by this mpirun cannot talk through this mpi4py; rebuild it: " + hint)
    return ok(f"mpirun and mpi4py both use {_name(runner)}")


def _name(identity: tuple[str, str] | None) -> str:
    return f"{identity[0]} {identity[1]}" if identity else "an unknown MPI"


def parse_check_build(text: str) -> dict[str, list[str]]:
    """`horovodrun --check-build` -> {"Available Frameworks": ["PyTorch"], ...}: the [X] items per section."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Available ") and stripped.endswith(":"):
            current = stripped[:-1]
            sections[current] = []
        elif current is not None and stripped.startswith("[X]"):
            sections[current].append(stripped[3:].strip())
    return sections


def check_horovod(ctx: DoctorContext) -> Outcome:
    requires = ctx.spec is not None and ctx.spec.distributed.strategy == "horovod"
    hint = "build it with scripts/install_horovod.sh (pip install 'hpc-train[horovod]' needs the same steps)"
    if importlib.util.find_spec("horovod") is None:
        return needed(requires, "Horovod not installed", hint, "needed for distributed.strategy: horovod")
    runner = shutil.which("horovodrun") or str(Path(sys.executable).parent / "horovodrun")
    result = ctx.probe([runner, "--check-build"], timeout=180)
    if isinstance(result, str) or result.returncode != 0:
        return fail(f"`horovodrun --check-build` failed: {result if isinstance(result, str) else said(result)}", hint)
    built = parse_check_build(result.stdout)
    frameworks = built.get("Available Frameworks", [])
    controllers = built.get("Available Controllers", [])
    operations = built.get("Available Tensor Operations", [])
    version = result.stdout.strip().splitlines()[0].rstrip(":") if result.stdout.strip() else "Horovod"
    detail = (f"{version}: frameworks: {', '.join(frameworks) or 'none'}; controllers: {', '.join(controllers) or 'none'}; "
              f"tensor operations: {', '.join(operations) or 'none'}")
    if "PyTorch" not in frameworks:
        return fail(f"Horovod built without PyTorch ({detail})", "rebuild with HOROVOD_WITH_PYTORCH=1: " + hint)
    if ctx.spec is not None and requires and ctx.spec.resources.gpus_per_node and "NCCL" not in operations:
        return fail(f"the spec trains on GPUs but Horovod has no NCCL ({detail})",
                    "rebuild with HOROVOD_GPU_OPERATIONS=NCCL: " + hint)
    return ok(detail)


_TORCH_CUDA = ("import json, torch\n"
               "cuda = torch.cuda.is_available()\n"
               "info = {'cuda': cuda, 'cuda_version': torch.version.cuda, 'count': torch.cuda.device_count() if cuda else 0}\n"
               "if cuda:\n"
               "    info['names'] = [torch.cuda.get_device_name(i) for i in range(info['count'])]\n"
               "    v = torch.cuda.nccl.version()\n"
               "    info['nccl'] = '.'.join(map(str, v)) if isinstance(v, tuple) else str(v)\n"
               "print(json.dumps(info))")


def check_gpus(ctx: DoctorContext) -> Outcome:
    if importlib.util.find_spec("torch") is None:
        return skip("torch not installed (needed for neural_network and package.module:factory models)")
    result = ctx.python_probe(_TORCH_CUDA)
    if isinstance(result, str) or result.returncode != 0:
        return fail(f"torch does not load: {result if isinstance(result, str) else said(result)[-400:]}",
                    "reinstall torch for this machine (https://pytorch.org/get-started/locally/)")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    if not info["cuda"]:
        built = f"torch built for CUDA {info['cuda_version']}" if info["cuda_version"] else "CPU-only torch"
        return skip(f"no GPU visible here ({built}); login nodes often have none, jobs see their nodes' GPUs")
    if not info.get("nccl"):
        return fail("GPUs but no NCCL in torch", "install a CUDA build of torch; DDP on GPUs needs NCCL")
    names = sorted(set(info["names"]))
    return ok(f"{info['count']} GPU(s) ({', '.join(names)}), CUDA {info['cuda_version']}, NCCL {info['nccl']}")


def check_apptainer(ctx: DoctorContext) -> Outcome:
    requires = ctx.spec is not None and ctx.spec.container is not None
    program = shutil.which("apptainer") or shutil.which("singularity")
    if program is None:
        return needed(requires, "apptainer not on PATH", "install Apptainer or `module load apptainer`; "
                      "without it, drop the spec's container section", "needed only for specs with a container")
    result = ctx.probe([program, "--version"])
    if isinstance(result, str) or result.returncode != 0:
        return fail(f"`{program} --version` failed: {result if isinstance(result, str) else said(result)}",
                    "check the Apptainer installation")
    return ok(f"{Path(program).name}: {said(result)}")


# -- this machine's folders


def check_registry(ctx: DoctorContext) -> Outcome:
    from hpc_train.registry import JobRegistry

    try:
        registry = JobRegistry(ctx.home)
        count = len(registry.list())
    except RegistryError as exc:
        return fail(str(exc).split("; HINT: ")[0], "set HPC_TRAIN_HOME (or --home) to a writable folder")
    probe = ctx.home / f".doctor-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return fail(f"{ctx.home} is not writable: {exc.strerror}", "set HPC_TRAIN_HOME (or --home) to a writable folder")
    return ok(f"{registry.path} writable ({count} job(s), {registry.journal_mode} journal)")


def _filesystem(path: Path) -> tuple[str, bool]:
    mount = mount_of(path)
    if mount is None:
        return "an unknown filesystem", False
    kind = NETWORK_FILESYSTEMS.get(mount.fstype)
    return (f"{kind} ({mount.fstype} at {mount.point})" if kind else f"a local disk ({mount.fstype} at {mount.point})",
            kind is not None)


def check_home_filesystem(ctx: DoctorContext) -> Outcome:
    where, network = _filesystem(ctx.home)
    if network:
        return ok(f"HPC_TRAIN_HOME {ctx.home} is on {where}: the registry uses SQLite's rollback journal "
                  "(WAL is unsafe when several login nodes share the file); every login node sees the same jobs")
    return ok(f"HPC_TRAIN_HOME {ctx.home} is on {where}: fast (WAL journal); jobs submitted from another "
              "login node are in that node's registry, not this one")


def check_checkpoint_filesystem(ctx: DoctorContext) -> Outcome:
    where, network = _filesystem(ctx.checkpoint_dir)
    if network:
        return ok(f"checkpoints under {ctx.checkpoint_dir} are on {where}: every node sees them; a requeued "
                  "job resumes wherever it lands")
    return warn(f"checkpoints under {ctx.checkpoint_dir} are on {where}: only this host sees them; a job "
                "requeued onto another node starts over, and the ranks of a multi-node job cannot share them",
                "set checkpoint.dir (or output_dir) to a folder on the cluster's shared filesystem "
                "($HOME, $WORK or $SCRATCH on most clusters), unless all nodes mount this one")


Check = Callable[[DoctorContext], Outcome]

# name shown -> check; run in this order (the SLURM lines first: later lines refer to them)
CHECKS: dict[str, Check] = {
    "SLURM client": check_slurm_client,
    "SLURM controller": check_controller,
    "accounting (sacct)": check_accounting,
    "partitions (sinfo)": check_partitions,
    "spec: partition": check_spec_partition,
    "spec: GPUs": check_spec_gpus,
    "srun PMIx": check_srun_pmix,
    "MPI (mpirun, mpi4py)": check_mpi,
    "Horovod": check_horovod,
    "GPUs (CUDA, NCCL)": check_gpus,
    "Apptainer": check_apptainer,
    "registry": check_registry,
    "HPC_TRAIN_HOME filesystem": check_home_filesystem,
    "checkpoint filesystem": check_checkpoint_filesystem,
}
