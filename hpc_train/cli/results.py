"""`hpc-train results ID [--json]`: the job's final metrics."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import print_json, registry_from_args
from hpc_train.cli.run import print_results
from hpc_train.errors import UserError
from hpc_train.jobs import refresh
from hpc_train.rundir import RunDirectory
from hpc_train.status_document import job_status


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("results", help="final metrics of a job",
                            description="Print results.json of a finished job; a failed job shows its error.")
    parser.add_argument("id")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    record = refresh(registry, [registry.get(args.id)])[0]
    if record.kind == "sweep":
        return sweep_results(args, record.id)
    children = registry.children(record.id)
    if children:
        refresh(registry, children)
        table = [{**job_status(c), "results": RunDirectory(c.run_dir).results()} for c in children]
        if args.json:
            print_json({"id": record.id, "kind": record.kind, "tasks": table, **record.extra.get("summary", {})})
        else:
            for row in table:
                res = row["results"] or {}
                print(f"{row['id']}  {row['status']:<10} " + "  ".join(
                    f"{k}={res[k]:.4f}" for k in ("accuracy", "f1_score") if isinstance(res.get(k), float)))
        return 0
    results = RunDirectory(record.run_dir).results()
    if results is None:
        summary = job_status(record)
        detail = f": {summary['error']}" if summary.get("error") else ""
        tail = "\n" + "\n".join(summary["traceback"]) if summary.get("traceback") else ""
        raise UserError(f"job {record.id} has no results; it is {record.status.value}{detail}{tail}")
    if args.json:
        print_json(results)
    else:
        print_results(results)
    return 0


def sweep_results(args: argparse.Namespace, sweep_id: str) -> int:
    """Every trial of a sweep (params, cross-validated mean and std), best first."""
    from hpc_train.orchestrator import TrainingOrchestrator

    results = TrainingOrchestrator(home=args.home, executor="local").get_results(sweep_id)
    if args.json:
        print_json(results)
        return 0
    reverse = results["direction"] == "maximize"
    done = sorted((t for t in results["trials"] if t["value"] is not None), key=lambda t: t["value"], reverse=reverse)
    print(f"sweep {results['id']} ({results['status']}): {results['strategy']} search, "
          f"{results['finished']}/{results['budget']} trials, {results['metric']} ({results['direction']})")
    for trial in done + [t for t in results["trials"] if t["value"] is None]:
        value = "-" if trial["value"] is None else f"{trial['value']:.4f} ± {trial['cv_std'] or 0:.4f}"
        print(f"  #{trial['number']:<4} {trial['state']:<9} {value:<18} {trial['params']}")
    return 0
