"""Rendering of sbatch scripts and Apptainer definitions from job specs (pure functions)."""

from hpc_train.render.sbatch import (
    RenderContext,
    container_launcher,
    job_environment,
    render_apptainer,
    render_sbatch,
    render_setup,
    worker_command,
    write_rendered,
)

__all__ = ["RenderContext", "container_launcher", "job_environment", "render_apptainer", "render_sbatch", "render_setup",
           "worker_command", "write_rendered"]
