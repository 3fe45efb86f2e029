"""Pipelines: Python scripts run one after another. On SLURM every stage is a job that depends on
the one before it (`--dependency=afterok:<prev>`, `--kill-on-invalid-dep=yes`), so a failed stage
leaves the rest cancelled by SLURM itself; locally one process runs them in order and stops at the
first failure.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpc_train.errors import SpecError
from hpc_train.jobs import get_scheduler
from hpc_train.orchestrator.config import resources_section
from hpc_train.orchestrator.stage import run_stage, run_stages_in_order
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.spec.model import SLURM_NAME, ResourcesSpec
from hpc_train.status import JobStatus

STAGE_KEYS = ("stage", "script", "args", "resources")


@dataclass(frozen=True)
class Stage:
    """One step: `python SCRIPT ARGS...` run in the pipeline's working directory."""

    stage: str
    script: str
    args: tuple[str, ...] = ()
    resources: dict[str, Any] = field(default_factory=dict)

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, self.script, *self.args]


def parse_stages(stages: Any, *, base_dir: Path, where: str = "create_pipeline") -> list[Stage]:
    """Check a list of `{"stage": name, "script": path[, "args": [...], "resources": {...}]}`."""
    if not isinstance(stages, Sequence) or isinstance(stages, str) or not stages:
        raise SpecError("a pipeline is a non-empty list of stages like {'stage': 'train', 'script': 'train.py'}",
                        file=where, value=stages)
    parsed: list[Stage] = []
    for n, item in enumerate(stages):
        key = f"stages[{n}]"
        if not isinstance(item, Mapping):
            raise SpecError("a stage must be a mapping with 'stage' and 'script'", file=where, key=key, value=item)
        unknown = sorted(set(item) - set(STAGE_KEYS))
        if unknown:
            raise SpecError("unknown key", file=where, key=f"{key}.{unknown[0]}", value=item[unknown[0]],
                            allowed=STAGE_KEYS)
        for required in ("stage", "script"):
            if not isinstance(item.get(required), str) or not item[required]:
                raise SpecError(f"'{required}' is required and must be text", file=where, key=f"{key}.{required}",
                                value=item.get(required))
        name = item["stage"]
        if not SLURM_NAME.fullmatch(name):
            raise SpecError("a stage name may contain letters, digits and _ . + -", file=where,
                            key=f"{key}.stage", value=name)
        if name in {s.stage for s in parsed}:
            raise SpecError("stage names must be unique", file=where, key=f"{key}.stage", value=name)
        script = (base_dir / Path(item["script"]).expanduser()).absolute()
        if not script.is_file():
            raise SpecError("stage script not found", file=where, key=f"{key}.script", value=item["script"],
                            hint=f"paths are relative to {base_dir}")
        args = item.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
            raise SpecError("args must be a list of words", file=where, key=f"{key}.args", value=args)
        resources = resources_section(item.get("resources"), where=f"{key}.resources")
        try:
            ResourcesSpec.model_validate(resources)
        except ValueError as exc:
            raise SpecError(f"bad resources: {exc}".splitlines()[0], file=where, key=f"{key}.resources",
                            value=item.get("resources")) from None
        parsed.append(Stage(name, str(script), tuple(str(a) for a in args), resources))
    return parsed


def stage_parameters(name: str, resources: Mapping[str, Any], dependency: str | None) -> dict[str, Any]:
    """SlurmExecutor parameters of one stage job: a pure function (what a dry run would print)."""
    r = ResourcesSpec.model_validate(dict(resources))
    extra: dict[str, Any] = {"open-mode": "append"}
    if dependency:
        extra.update({"dependency": dependency, "kill-on-invalid-dep": "yes"})
    params: dict[str, Any] = {
        "job_name": name, "nodes": 1, "ntasks_per_node": 1, "cpus_per_task": r.cpus_per_task,
        "mem": f"{r.memory}M", "time": max(1, math.ceil(r.time / 60)), "additional_parameters": extra,
        "setup": [f"export OMP_NUM_THREADS={r.cpus_per_task}"],
    }
    if r.gpus_per_node:
        params["gpus_per_node"] = r.gpus_per_node
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(r, key):
            params[key] = getattr(r, key)
    return params


def submit_pipeline(stages: Sequence[Stage], *, name: str, executor: str, registry: JobRegistry, workdir: Path,
                    output_dir: str) -> JobRecord:
    """Submit every stage (SLURM: chained jobs; local: one process running them in order) and register them."""
    scheduler = get_scheduler(executor)
    pipeline_id = JobRegistry.new_id()
    pipeline_dir = (Path(output_dir) / f"{name}-{pipeline_id}").absolute()
    stage_dirs = [pipeline_dir / f"{n}-{stage.stage}" for n, stage in enumerate(stages)]
    for directory in stage_dirs:
        RunDirectory(directory).create().write_status(JobStatus.PENDING)
    if scheduler.name == "local":
        ids = _submit_local(stages, stage_dirs, workdir, pipeline_dir)
    else:
        ids = _submit_slurm(stages, stage_dirs, workdir, pipeline_dir, name)
    parent = registry.add(JobRecord(
        id=pipeline_id, name=name, kind="pipeline", executor=scheduler.name, scheduler_id=None,
        run_dir=str(pipeline_dir), status=JobStatus.PENDING,
        extra={"workdir": str(workdir), "stages": [{"stage": s.stage, "script": s.script, "args": list(s.args)}
                                                   for s in stages]}))
    now = time.time()
    for n, (stage, directory, scheduler_id) in enumerate(zip(stages, stage_dirs, ids)):
        registry.add(JobRecord(id=JobRegistry.new_id(), name=f"{name}-{stage.stage}", kind="job",
                               executor=scheduler.name, scheduler_id=scheduler_id, run_dir=str(directory),
                               status=JobStatus.PENDING, parent=pipeline_id, created=now + n * 1e-3,
                               extra={"stage": stage.stage, "index": n}))
    return parent


def _submit_slurm(stages: Sequence[Stage], stage_dirs: Sequence[Path], workdir: Path, pipeline_dir: Path,
                  name: str) -> list[str]:
    from hpc_train.scheduler.slurm import _Executor, check_controller

    check_controller()
    ids: list[str] = []
    for n, (stage, directory) in enumerate(zip(stages, stage_dirs)):
        job_name = _job_name(f"{name}-{stage.stage}")
        params = stage_parameters(job_name, stage.resources, f"afterok:{ids[-1]}" if ids else None)
        executor = _Executor(folder=directory / "submitit", python=sys.executable)
        executor.update_parameters(**params)
        job = executor.submit(run_stage, stage.argv(), str(workdir), str(directory), index=n, total=len(stages),
                              pipeline_dir=str(pipeline_dir))
        ids.append(str(job.job_id))
    return ids


def _submit_local(stages: Sequence[Stage], stage_dirs: Sequence[Path], workdir: Path, pipeline_dir: Path) -> list[str]:
    import submitit

    executor = submitit.LocalExecutor(folder=pipeline_dir / "submitit")
    executor.update_parameters(timeout_min=max(1, sum(ResourcesSpec.model_validate(s.resources).time
                                                      for s in stages) // 60))
    plan = [{"stage": s.stage, "argv": s.argv(), "run_dir": str(d)} for s, d in zip(stages, stage_dirs)]
    job = executor.submit(run_stages_in_order, plan, str(workdir), str(pipeline_dir))
    return [str(job.job_id)] * len(stages)


def _job_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)[:128]
