"""TrainingOrchestrator: the Python API for jobs, batches, sweeps and pipelines.

Everything it submits goes through the same registry and run directories as the CLI, so
`hpc-train status ID` in another shell and a new TrainingOrchestrator after a restart see it too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpc_train.errors import SpecError, UserError
from hpc_train.jobs import EXECUTORS, cancel_jobs, get_scheduler, refresh, submit_job, wait_for
from hpc_train.orchestrator.config import checkpoint_section, own_checkpoint, spec_from_config
from hpc_train.orchestrator.handles import Job, Pipeline, SearchJob
from hpc_train.registry import JobRecord, JobRegistry
from hpc_train.rundir import RunDirectory
from hpc_train.spec import JobSpec
from hpc_train.spec.applicability import warn, warn_ignored
from hpc_train.spec.model import SLURM_NAME
from hpc_train.status_document import job_status, parent_status, status_document

if TYPE_CHECKING:
    from hpc_train.orchestrator.search import SearchSettings  # imports optuna

# Poll intervals (first, longest) while waiting: local status is a file read, SLURM status an sacct call.
POLL_S = {"local": (0.2, 0.5), "slurm": (1.0, 10.0)}
CLI_SWEEP_KEYS = {"model": "model.type", "search_strategy": "sweep.strategy", "metric": "sweep.metric",
                  "direction": "sweep.direction", "cv": "sweep.cv", "param_space": "sweep.param_space",
                  "n_trials": "sweep.trials", "parallel": "sweep.parallel", "params": "model.hyperparameters"}


def sweep_settings(spec: JobSpec, file: str = "<spec>") -> SearchSettings:
    """The checked search of a spec's `sweep` section; mistakes are SpecErrors naming its keys."""
    from hpc_train.orchestrator.search import validate_search

    if spec.sweep is None:
        raise SpecError("the spec has no sweep section", file=file, key="sweep",
                        hint="add sweep: {strategy: grid, param_space: {max_depth: [10, 20]}}")
    sweep = spec.sweep
    return validate_search(model=spec.model.type, param_space=sweep.param_space, strategy=sweep.strategy,
                           metric=sweep.metric, direction=sweep.direction, cv=sweep.cv, n_trials=sweep.trials,
                           parallel=sweep.parallel, seed=spec.training.seed, base_params=spec.model.hyperparameters,
                           where=file, keys=CLI_SWEEP_KEYS)


class BatchJobs(list[Job]):
    """The jobs of one batch (a list of Job), with the batch's own id."""

    def __init__(self, jobs: Sequence[Job], batch_id: str, run_dir: Path) -> None:
        super().__init__(jobs)
        self.id = batch_id
        self.run_dir = run_dir


class TrainingOrchestrator:
    """Submit and follow training jobs, batches, hyperparameter searches and pipelines.

    executor: "auto" (SLURM when sbatch answers, else this machine), "slurm", "sbatch" or "local".
    home: the registry folder (default $HPC_TRAIN_HOME or ~/.hpc-train). output_dir: where run
    directories are created. checkpoint_dir: a folder for checkpoints (default: each run directory).
    """

    def __init__(self, checkpoint_dir: str | Path | None = None, checkpoint_interval: int = 10,
                 auto_resume: bool = True, executor: str = "auto", home: str | Path | None = None,
                 output_dir: str | Path = "runs") -> None:
        if executor not in EXECUTORS:
            raise UserError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
        if isinstance(checkpoint_interval, bool) or not isinstance(checkpoint_interval, int) or checkpoint_interval < 1:
            raise UserError(f"checkpoint_interval must be a positive number of epochs, got {checkpoint_interval!r}")
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_interval = checkpoint_interval
        self.auto_resume = auto_resume
        self.output_dir = str(output_dir)
        self.registry = JobRegistry(home)
        self._executor = executor
        self._resolved: str | None = None

    @property
    def executor(self) -> str:
        """The executor in use; "auto" is settled (one `scontrol ping`) on first use."""
        if self._resolved is None:
            self._resolved = get_scheduler(self._executor).name
        return self._resolved

    # -- single jobs

    def submit_training_job(self, name: str, config: Mapping[str, Any] | JobSpec,
                            resources: Mapping[str, Any] | None = None,
                            resume_from_checkpoint: bool = False) -> Job:
        """Submit one job. config: {"model", "data_path", "hyperparameters" or "params", "epochs", ...}."""
        job_id = JobRegistry.new_id()
        spec = spec_from_config(name, config, resources=resources, output_dir=self.output_dir,
                                checkpoint=self._checkpoint(name, job_id, resume_from_checkpoint))
        warn_ignored(spec, file="submit_training_job", skip=() if own_checkpoint(config) else ("checkpoint",))
        if resume_from_checkpoint and not spec.model.is_torch:
            warn(f"submit_training_job: resume_from_checkpoint: {spec.model.type} is a scikit-learn model, fitted "
                 "once; it writes no checkpoints to resume from")
        record = submit_job(spec, executor=self.executor, base_dir=Path.cwd(), registry=self.registry, job_id=job_id)
        assert isinstance(record, JobRecord)
        return Job(record.id, record.name, Path(record.run_dir), self)

    def _checkpoint(self, name: str, job_id: str, resume: bool) -> dict[str, Any]:
        folder = self.checkpoint_dir
        if folder is None and resume:  # a stable place, so that the next submission finds it
            folder = Path(self.output_dir) / "checkpoints"
        return checkpoint_section(folder, self.checkpoint_interval, self.auto_resume, name=name, job_id=job_id,
                                  resume=resume)

    def get_job_status(self, job_id: str) -> dict[str, Any]:
        """{"id", "name", "kind", "status", "progress" (0..1), "eta" ("10min"), "error", ...}.

        Batches, sweeps and pipelines add "tasks"; sweeps "trials" and "best_value"; pipelines "stages".
        """
        return status_document(self.registry, self.registry.get(job_id))

    def wait_for_completion(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the job (every task of a batch, sweep or pipeline) ends, or timeout seconds pass.

        Shows a progress bar on a terminal, nothing otherwise. Returns the final get_job_status.
        """
        record = self.registry.get(job_id)
        ids = [c.id for c in self.registry.children(record.id)] or [record.id]
        first, longest = POLL_S.get(record.executor, POLL_S["slurm"])
        if not sys.stderr.isatty():
            wait_for(self.registry, ids, timeout=timeout, poll=first, max_poll=longest)
            return self.get_job_status(record.id)
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TextColumn("{task.fields[state]}"), TimeElapsedColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(f"{record.name} {record.id}", total=1.0, state="")

            def on_poll(_: object) -> None:
                now = self.get_job_status(record.id)
                bar.update(task, completed=now["progress"] or 0.0,
                           state=f"{now['status']}" + (f" eta {now['eta']}" if now.get("eta") else ""))

            wait_for(self.registry, ids, timeout=timeout, poll=first, max_poll=longest, on_poll=on_poll)
            on_poll(None)
        return self.get_job_status(record.id)

    def get_results(self, job_id: str) -> dict[str, Any]:
        """results.json of a job; of a batch, every job's; of a sweep, the best trial and all trials."""
        record = refresh(self.registry, [self.registry.get(job_id)])[0]
        if record.kind == "sweep":
            return self._sweep_results(record)
        children = self.registry.children(record.id)
        if record.kind != "job":
            status = parent_status(record, children)
            tasks = [{"id": c.id, "name": c.name, "status": c.status.value,
                      "results": RunDirectory(c.run_dir).results()} for c in children]
            return {"id": record.id, "kind": record.kind, "status": status["status"], "tasks": tasks,
                    **({"stages": status["stages"]} if "stages" in status else {})}
        results = RunDirectory(record.run_dir).results()
        if results is None:
            summary = job_status(record)
            detail = f": {summary['error']}" if summary.get("error") else ""
            raise UserError(f"job {record.id} has no results; it is {record.status.value}{detail}")
        return results

    def _sweep_results(self, record: JobRecord) -> dict[str, Any]:
        search = self.job(record.id)
        assert isinstance(search, SearchJob)
        from hpc_train.orchestrator.sweep_report import sweep_summary, trial_rows

        study, settings = search.study(), search.settings
        return {"id": record.id, "status": record.status.value, **sweep_summary(study, settings),
                "trials": trial_rows(study, settings)}

    def cancel(self, job_id: str) -> None:
        """Stop a job, or every unfinished task of a batch, sweep or pipeline (as `hpc-train cancel`)."""
        cancel_jobs(self.registry, self.registry.get(job_id))

    def job(self, job_id: str) -> Job | SearchJob | Pipeline:
        """A handle for any earlier submission, found by id (or unique prefix) in the registry."""
        return self._handle(self.registry.get(job_id))

    def _handle(self, record: JobRecord) -> Job | SearchJob | Pipeline:
        if record.kind == "sweep":
            return SearchJob(record.id, record.name, Path(record.run_dir), self)
        if record.kind == "pipeline":
            from hpc_train.orchestrator.pipeline import Stage

            stages = [Stage(s["stage"], s["script"], tuple(s.get("args", ()))) for s in record.extra.get("stages", [])]
            return Pipeline(record.name, stages, Path(record.extra.get("workdir", ".")), self, record.id,
                            Path(record.run_dir))
        return Job(record.id, record.name, Path(record.run_dir), self)

    # -- batches

    def submit_batch_training(self, configs: Sequence[Mapping[str, Any] | JobSpec],
                              resources: Mapping[str, Any] | None = None, name: str = "batch",
                              parallel: int | None = None) -> BatchJobs:
        """Submit many jobs as one SLURM array (or local jobs); returns their Jobs (with the batch id as .id)."""
        from hpc_train.orchestrator.batch import submit_batch

        if isinstance(configs, (str, Mapping)) or not isinstance(configs, Sequence) or not configs:
            raise UserError("submit_batch_training takes a non-empty list of job configs")
        specs = []
        for n, config in enumerate(configs):
            model = config.model.type if isinstance(config, JobSpec) else str(config.get("model", "job"))
            job_name = config.name if isinstance(config, JobSpec) else str(config.get("name")) if config.get("name") \
                else re.sub(r"[^A-Za-z0-9_.+-]", "_", model)[:128]
            try:
                specs.append(spec_from_config(job_name, {k: v for k, v in config.items() if k != "name"}
                                              if isinstance(config, Mapping) else config, resources=resources,
                                              output_dir=self.output_dir,
                                              checkpoint=self._checkpoint(job_name, JobRegistry.new_id(), False)))
            except SpecError as exc:
                raise SpecError(exc.reason, file=f"submit_batch_training[{n}]", key=exc.key, value=exc.value,
                                allowed=exc.allowed, hint=exc.hint) from None
            warn_ignored(specs[-1], file=f"submit_batch_training[{n}]",
                         skip=() if own_checkpoint(config) else ("checkpoint",))
        parent, children = submit_batch(specs, name=name, executor=self.executor, registry=self.registry,
                                        base_dir=Path.cwd(), output_dir=self.output_dir, parallel=parallel)
        return BatchJobs([Job(c.id, c.name, Path(c.run_dir), self) for c in children], parent.id,
                         Path(parent.run_dir))

    def wait_for_all(self, jobs: Sequence[Job | str] | str, timeout: float | None = None) -> list[dict[str, Any]]:
        """Wait for every job (Jobs, ids, or a batch); returns each one's final status."""
        records = self._records(jobs)
        first, longest = POLL_S.get(records[0].executor, POLL_S["slurm"]) if records else (1.0, 10.0)
        wait_for(self.registry, [r.id for r in records], timeout=timeout, poll=first, max_poll=longest)
        return [self.get_job_status(r.id) for r in records]

    def select_best_model(self, jobs: Sequence[Job | str] | str, metric: str = "f1_score",
                          mode: str | None = None) -> Any:
        """The completed job with the best metric (mode "max"/"min"; default: min for loss, else max).

        Returns a BestModel: id, name, metric, value, results, model_path, run_dir.
        """
        from hpc_train.orchestrator.batch import select_best

        return select_best(self.registry, self._records(jobs), metric=metric, mode=mode)

    def _records(self, jobs: Sequence[Job | str] | str) -> list[JobRecord]:
        """Records for Jobs or ids; a batch (or its id) stands for its jobs."""
        items: Sequence[Job | str] = [jobs] if isinstance(jobs, str) else jobs
        if isinstance(jobs, BatchJobs) and not jobs:
            items = [jobs.id]
        records: list[JobRecord] = []
        for item in items:
            record = self.registry.get(item if isinstance(item, str) else item.id)
            records += self.registry.children(record.id) if record.kind != "job" else [record]
        return records

    # -- hyperparameter searches

    def hyperparameter_search(self, model: str, param_space: Mapping[str, Any], search_strategy: str = "grid",
                              metric: str = "f1_score", cv: int = 5, n_trials: int | None = None,
                              parallel: int | None = None, direction: str | None = None,
                              data: str = "sklearn:digits", resources: Mapping[str, Any] | None = None,
                              name: str | None = None, params: Mapping[str, Any] | None = None,
                              seed: int = 0) -> SearchJob:
        """Start a search: `parallel` workers share one Optuna journal until n_trials trials ran.

        grid: every combination (n_trials caps it); random and bayesian (TPE): n_trials (default 20).
        Each trial is scored by stratified cv-fold cross-validation (mean and std recorded).
        direction defaults to the metric's (minimize for loss). params: fixed hyperparameters.
        """
        from hpc_train.orchestrator.search import validate_search

        settings = validate_search(model=model, param_space=param_space, strategy=search_strategy, metric=metric,
                                   direction=direction, cv=cv, n_trials=n_trials, parallel=parallel, seed=seed,
                                   base_params=params)
        spec = spec_from_config(name or f"{model}-sweep", {"model": model, "data_path": data, "seed": seed},
                                resources=resources, output_dir=self.output_dir)
        return self._start_sweep(spec, settings, Path.cwd(), where="hyperparameter_search", cv_key="cv")

    def submit_sweep_spec(self, spec: JobSpec, base_dir: Path, *, file: str = "<spec>") -> SearchJob:
        """Start the search described by a spec's `sweep` section (what `hpc-train sweep SPEC` does)."""
        return self._start_sweep(spec, sweep_settings(spec, file), base_dir, where=file, cv_key="sweep.cv")

    def _start_sweep(self, spec: JobSpec, settings: Any, base_dir: Path, *, where: str, cv_key: str) -> SearchJob:
        from hpc_train.orchestrator.sweep import submit_sweep

        record = submit_sweep(spec, settings, executor=self.executor, registry=self.registry, base_dir=base_dir,
                              where=where, cv_key=cv_key)
        return SearchJob(record.id, record.name, Path(record.run_dir), self)

    def resubmit_sweep(self, sweep_id: str) -> SearchJob:
        """Continue a cancelled or failed sweep on its journal; finished trials are not run again."""
        from hpc_train.orchestrator.sweep import resubmit_sweep

        record = self.registry.get(sweep_id)
        if record.kind != "sweep":
            raise UserError(f"{record.id} is a {record.kind}, not a sweep")
        record = resubmit_sweep(self.registry, record)
        return SearchJob(record.id, record.name, Path(record.run_dir), self)

    # -- pipelines

    def create_pipeline(self, stages: Sequence[Mapping[str, Any]], name: str = "pipeline",
                        workdir: str | Path | None = None) -> Pipeline:
        """A pipeline of `{"stage": name, "script": "x.py"[, "args": [...], "resources": {...}]}`; run() submits it.

        Scripts run as `python script.py` in workdir (default: the current directory).
        """
        from hpc_train.orchestrator.pipeline import parse_stages

        folder = Path(workdir or Path.cwd()).absolute()
        if not SLURM_NAME.fullmatch(name):
            raise SpecError("a pipeline name may contain letters, digits and _ . + -", file="create_pipeline",
                            key="name", value=name)
        return Pipeline(name, parse_stages(stages, base_dir=folder), folder, self)

    def run_pipeline(self, pipeline: Pipeline) -> JobRecord:
        """Submit a pipeline's stages (Pipeline.run calls this)."""
        from hpc_train.orchestrator.pipeline import submit_pipeline

        return submit_pipeline(pipeline.stages, name=pipeline.name, executor=self.executor, registry=self.registry,
                               workdir=pipeline.workdir, output_dir=self.output_dir)
