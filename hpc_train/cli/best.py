"""`hpc-train best ID`: the best trial of a sweep, or the best job of a batch (by a metric)."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("best", help="best trial of a sweep, or best job of a batch",
                            description="For a sweep: the best completed trial (its parameters, cross-validated "
                                        "mean and std). For a batch or a list of job ids: the completed job with "
                                        "the best --metric, and its model file.")
    parser.add_argument("ids", nargs="+", metavar="ID", help="a sweep, a batch, or several job ids")
    parser.add_argument("--metric", default="f1_score", help="for jobs: the results key to compare (default f1_score)")
    parser.add_argument("--mode", choices=["max", "min"], help="for jobs: default max (min for loss)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hpc_train.orchestrator import SearchJob, TrainingOrchestrator

    orchestrator = TrainingOrchestrator(home=args.home, executor="local")
    first = orchestrator.job(args.ids[0])
    if isinstance(first, SearchJob) and len(args.ids) == 1:
        best = first.best_trial
        settings = first.settings
        if args.json:
            print_json({"id": first.id, "metric": settings.metric, "direction": settings.direction, **best})
            return 0
        print(f"sweep {first.id}: best {settings.metric} {best['value']:.4f} "
              f"(cv std {best['cv_std'] or 0:.4f}, trial {best['number']})")
        for name, value in best["params"].items():
            print(f"  {name} = {value!r}")
        return 0
    chosen = orchestrator.select_best_model(args.ids, metric=args.metric, mode=args.mode)
    if args.json:
        print_json(chosen.to_json())
        return 0
    print(f"best job {chosen.id} ({chosen.name}): {chosen.metric} {chosen.value:.4f}")
    print(f"model: {chosen.model_path or '-'}")
    return 0
