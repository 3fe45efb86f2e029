"""`hpc-train sweep SPEC`: a hyperparameter search from the spec's `sweep` section; prints the sweep id last."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import add_spec_arguments, spec_from_args
from hpc_train.jobs import EXECUTORS


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="run the spec's hyperparameter search; prints the sweep id last",
                            description="Start the search in the spec's `sweep` section: `parallel` workers (one "
                                        "SLURM array, or local processes) share one Optuna journal in the sweep's "
                                        "run directory. `hpc-train best ID` shows the best trial.")
    add_spec_arguments(parser)
    parser.add_argument("--executor", choices=[e for e in EXECUTORS if e != "sbatch"], default="auto")
    parser.add_argument("--wait", action="store_true", help="wait for the sweep to finish and print the best trial")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hpc_train.orchestrator import TrainingOrchestrator

    spec, base = spec_from_args(args, single_job=False, sweep=True)
    orchestrator = TrainingOrchestrator(executor=args.executor, home=args.home, output_dir=spec.output_dir)
    search = orchestrator.submit_sweep_spec(spec, base, file=args.spec)
    settings = search.settings
    print(f"submitted sweep {search.name}: {settings.strategy} search of {settings.model}, {settings.budget} trials, "
          f"{settings.parallel} workers on {orchestrator.executor}, run dir {search.run_dir}")
    if args.wait:
        state = search.wait()
        if state["status"] == "completed":
            print(f"best {settings.metric}: {search.best_value:.4f} with {search.best_params}")
        else:
            print(f"sweep ended {state['status']}: {state.get('error') or ''}".rstrip(": "))
    print(f"sweep id: {search.id}")
    return 0
