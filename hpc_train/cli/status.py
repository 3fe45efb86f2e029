"""`hpc-train status [ID] [--json]`: where jobs stand, with progress, ETA and errors."""

from __future__ import annotations

import argparse

from hpc_train.cli.common import print_json, registry_from_args
from hpc_train.jobs import refresh
from hpc_train.status_document import status_document


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="status of one job (or of recent jobs)",
                            description="Show status, progress and ETA. A failed job shows the last "
                                        "lines of its traceback.")
    parser.add_argument("id", nargs="?", help="job id (or unique prefix); default: the 20 latest jobs")
    parser.add_argument("--json", action="store_true", help="stable JSON output (see README)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    records = [registry.get(args.id)] if args.id else registry.list(limit=20)
    refresh(registry, records + [c for r in records for c in registry.children(r.id)])  # one query for all
    summaries = [status_document(registry, record, fresh=True) for record in records]
    if args.json:
        print_json(summaries[0] if args.id else summaries)
        return 0
    print_table(summaries)
    for summary in summaries:
        if summary.get("traceback") and args.id:
            print("\n".join(summary["traceback"]))
    return 0


def print_table(summaries: list[dict]) -> None:
    rows = [("ID", "NAME", "EXECUTOR", "SCHED_ID", "STATUS", "PROGRESS", "ETA")]
    for s in summaries:
        for item in [s, *s.get("tasks", [])]:
            indent = "  " if item is not s else ""
            rows.append((indent + item["id"], item["name"], item["executor"], str(item["scheduler_id"] or "-"),
                         item["status"], f"{100 * (item['progress'] or 0):.0f}%", item["eta"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for s in summaries:
        if s.get("error"):
            print(f"{s['id']}: {s['error']}")
        if s.get("trials"):
            best = "" if s.get("best_value") is None else f", best {s['metric']} {s['best_value']:.4f} {s['best_params']}"
            print(f"{s['id']}: {s['trials']['finished']}/{s['trials']['budget']} trials finished{best}")
        for stage in s.get("stages", []):
            print(f"{s['id']}: stage {stage['stage']} {stage['status']}"
                  + (f" ({stage.get('note') or stage['error']})" if stage.get("note") or stage["error"] else ""))
