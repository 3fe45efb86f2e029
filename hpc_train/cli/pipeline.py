"""`hpc-train pipeline FILE`: run a YAML list of stages in order; prints the pipeline id last."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hpc_train.errors import SpecError
from hpc_train.jobs import EXECUTORS


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pipeline", help="run a YAML list of stages in order; prints the pipeline id last",
                            description="FILE is a YAML list of stages, `- {stage: train, script: train.py}` "
                                        "(optional args: [...], resources: {cpu: 2}), or a mapping with `name` and "
                                        "`stages`. Scripts run as `python script.py` in the file's folder. On SLURM "
                                        "each stage waits for the one before (afterok); a failure cancels the rest.")
    parser.add_argument("file", help="the pipeline YAML file")
    parser.add_argument("--executor", choices=[e for e in EXECUTORS if e != "sbatch"], default="auto")
    parser.add_argument("--name", help="pipeline name (default: the file's `name`, else its file name)")
    parser.add_argument("--workdir", type=Path, help="where the scripts run (default: the file's folder)")
    parser.add_argument("--wait", action="store_true", help="wait for the last stage; exit 1 if a stage failed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from hpc_train.orchestrator import TrainingOrchestrator

    path = Path(args.file)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read the pipeline file: {exc.strerror}", file=args.file) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=args.file) from None
    name = args.name or (document.get("name") if isinstance(document, dict) else None) or \
        path.stem.replace(" ", "_")
    stages: Any = document.get("stages") if isinstance(document, dict) else document
    workdir = (args.workdir or path.resolve().parent).absolute()
    orchestrator = TrainingOrchestrator(executor=args.executor, home=args.home)
    try:
        pipeline = orchestrator.create_pipeline(stages, name=name, workdir=workdir)
    except SpecError as exc:
        raise SpecError(exc.reason, file=args.file, key=exc.key, value=exc.value, allowed=exc.allowed,
                        hint=exc.hint) from None
    pipeline.run()
    print(f"submitted pipeline {name}: {len(pipeline.stages)} stages on {orchestrator.executor}, "
          f"run dir {pipeline.run_dir}")
    code = 0
    if args.wait:
        state = pipeline.wait()
        for stage in state["stages"]:
            print(f"  {stage['stage']:<20} {stage['status']:<10} {stage.get('note') or stage.get('error') or ''}")
        code = 0 if state["status"] == "completed" else 1
    print(f"pipeline id: {pipeline.id}")
    return code
