"""Pure rendering of what will be submitted: the sbatch script, the set-up lines, the Apptainer file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hpc_train import __version__
from hpc_train.render.templates import render_template
from hpc_train.spec.model import JobSpec

WORKER_MODULE = "hpc_train.runtime.worker"


@dataclass(frozen=True)
class RenderContext:
    """Where a job lives and how it is started; everything else comes from the spec."""

    spec_path: str
    run_dir: str
    python: str = "python3"
    array: str | None = None
    dependency: str | None = None
    script_name: str = "job.sbatch"
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def log_dir(self) -> str:
        return f"{self.run_dir}/logs"


def worker_command(spec: JobSpec, ctx: RenderContext) -> list[str]:
    """The argv each rank runs inside the job."""
    python = "python" if spec.container is not None else ctx.python
    return [python, "-m", WORKER_MODULE, "--spec", ctx.spec_path, "--run-dir", ctx.run_dir, *ctx.extra_args]


def container_launcher(spec: JobSpec) -> list[str]:
    """`apptainer exec --nv --bind ... IMAGE`, or nothing when the spec has no container."""
    if spec.container is None:
        return []
    words = ["apptainer", "exec"]
    if spec.container.nv:
        words.append("--nv")
    for bind in spec.container.binds:
        words += ["--bind", bind]
    words.append(spec.container.image)
    return words


def _threads(spec: JobSpec) -> int:
    return spec.training.threads or spec.resources.cpus_per_task


# torch allocates its large CPU buffers (gradient buckets among them) on transparent huge pages when
# this is set; with 4 KiB pages an MPI allreduce of them ran at 0.83x of the same on numpy's
# huge-page buffers at 64-256 MB (bench/RESULTS.md, "Allreduce"). A spec's resources.env can unset it
# ("0").
TORCH_ENV = {"THP_MEM_ALLOC_ENABLE": "1"}


def job_environment(spec: JobSpec, ctx: RenderContext) -> dict[str, str]:
    """The variables every job exports: torch's (for torch models), the spec's own, the thread count and
    the run directory."""
    defaults = TORCH_ENV if spec.model.is_torch else {}
    return {**defaults, **spec.resources.env, "OMP_NUM_THREADS": str(_threads(spec)),
            "HPC_TRAIN_RUN_DIR": ctx.run_dir}


def render_setup(spec: JobSpec, ctx: RenderContext) -> str:
    """The environment set-up lines (modules, venv, exports) shared by sbatch and submitit."""
    r = spec.resources
    return render_template("_setup.sh.j2", modules=r.modules, venv=r.venv,
                           env=job_environment(spec, ctx)).strip("\n") + "\n"


def render_sbatch(spec: JobSpec, ctx: RenderContext) -> str:
    """The whole sbatch script for `spec`: a pure function of its inputs."""
    r = spec.resources
    return render_template(
        "sbatch.sh.j2",
        version=__version__,
        spec=spec,
        r=r,
        script_name=ctx.script_name,
        log_dir=ctx.log_dir.replace("%", "%%"),  # SLURM expands %j, %x ... in file names; %% is a %
        log_pattern="%x-%A_%a" if ctx.array else "%x-%j",
        array=ctx.array,
        dependency=ctx.dependency,
        modules=r.modules,
        venv=r.venv,
        env=job_environment(spec, ctx),
        launcher=container_launcher(spec),
        command=worker_command(spec, ctx),
    )


def render_apptainer(spec: JobSpec) -> str:
    """The Apptainer definition for a spec with a container section."""
    if spec.container is None:
        raise ValueError("the spec has no container section")
    packages = ["hpc-train", *spec.container.packages]
    return render_template("apptainer.def.j2", version=__version__, spec=spec, container=spec.container,
                           packages=packages, env=spec.resources.env)


def write_rendered(spec: JobSpec, out_dir: Path, ctx: RenderContext) -> list[Path]:
    """Write job.sbatch (and apptainer.def with a container) into out_dir; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / ctx.script_name]
    paths[0].write_text(render_sbatch(spec, ctx))
    paths[0].chmod(0o755)
    if spec.container is not None:
        paths.append(out_dir / "apptainer.def")
        paths[1].write_text(render_apptainer(spec))
    return paths
