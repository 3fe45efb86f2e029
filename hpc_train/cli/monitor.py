"""`hpc-train monitor ID`: a live view of a job (status, progress, ETA, metrics, CPU/GPU) until it ends."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hpc_train.cli.common import registry_from_args
from hpc_train.monitor import TrainingMonitor
from hpc_train.registry import JobRecord
from hpc_train.status import JobStatus
from hpc_train.status_document import job_status

DEFAULT_INTERVAL = 3.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("monitor", help="watch a job live: progress, ETA, loss, CPU/GPU",
                            description="Show a job's status, progress, ETA, latest metrics and resource use, "
                                        "refreshed until the job ends (exit 0 when it completed, 1 otherwise). "
                                        "--once prints one plain snapshot and exits 0.")
    parser.add_argument("id", help="job id (or unique prefix)")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help=f"seconds between refreshes (default {DEFAULT_INTERVAL:g})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    monitor = TrainingMonitor(registry=registry_from_args(args))
    record = monitor.job(args.id)
    if args.once:
        print("\n".join(snapshot_lines(snapshot(monitor, record))))
        return 0
    interval = max(0.2, args.interval)
    if sys.stdout.isatty():
        record = _watch_live(monitor, record, interval)
    else:
        record = _watch_plain(monitor, record, interval)
    return 0 if record.status == JobStatus.COMPLETED else 1


def snapshot(monitor: TrainingMonitor, record: JobRecord) -> dict[str, Any]:
    """Everything one view shows: the status summary, the latest metrics, the resource use."""
    snap: dict[str, Any] = {"summary": job_status(record), "metrics": monitor.metrics_of(record),
                            "usage": monitor.usage_of(record), "trials": None}
    if record.kind != "job":
        children = monitor.registry.children(record.id)
        snap["trials"] = (sum(c.status.is_terminal for c in children), len(children))
    return snap


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:#.{digits}g}" if isinstance(value, float) else str(value)  # '#': 1.000, not 1


def _pair(value: Any, val_value: Any) -> str:
    text = _number(value)
    return text + (f" (val {_number(val_value)})" if val_value is not None else "")


def snapshot_lines(snap: dict[str, Any]) -> list[str]:
    """The `key: value` lines of a snapshot (stable: scripts may grep them)."""
    summary, metrics, usage = snap["summary"], snap["metrics"], snap["usage"]
    terminal = JobStatus(summary["status"]).is_terminal
    epoch = _number(metrics["epoch"])
    if metrics.get("epochs"):
        epoch += f"/{metrics['epochs']}"
    gpus = usage["gpu"]
    gpu = "none" if not gpus else f"{_number(usage['gpu_util'], 3)}% ({len(gpus)} GPU: {gpus[0].get('name', '?')})"
    cpu = "-" if usage["cpu"] is None else f"{usage['cpu']:.0f}% ({usage['ranks']} rank(s), {usage['samples']} samples)"
    lines = [
        f"job: {summary['id']} ({summary['name']})",
        f"status: {summary['status']}",
        f"progress: {100 * (summary['progress'] or 0):.0f}%",
        f"eta: {'-' if terminal else summary['eta'] or 'unknown'}",
        f"epoch: {epoch}",
        f"loss: {_pair(metrics['loss'], metrics['val_loss'])}",
        f"accuracy: {_pair(metrics['accuracy'], metrics['val_accuracy'])}",
        f"samples/s: {_number(metrics['samples_per_s'], 5)}",
        f"cpu: {cpu}",
        f"memory: {usage['memory'] or '-'}",
        f"gpu: {gpu}",
    ]
    if snap.get("trials"):
        done, total = snap["trials"]
        lines.insert(3, f"trials: {done}/{total} finished")
    if summary.get("error"):
        lines.append(f"error: {summary['error']}")
    return lines


def _one_line(snap: dict[str, Any]) -> str:
    """The compact line the plain (non-TTY) view prints at each refresh."""
    fields = dict(line.split(": ", 1) for line in snapshot_lines(snap)[1:])
    keep = ("status", "progress", "eta", "epoch", "loss", "samples/s", "cpu", "gpu")
    cpu = fields["cpu"].split(" ")[0]
    parts = [f"{k} {cpu if k == 'cpu' else fields[k]}" for k in keep]
    return time.strftime("%H:%M:%S ") + "  ".join(parts)


def _watch_plain(monitor: TrainingMonitor, record: JobRecord, interval: float) -> JobRecord:
    while True:
        snap = snapshot(monitor, record)
        if record.status.is_terminal:
            print("\n".join(snapshot_lines(snap)), flush=True)
            return record
        print(_one_line(snap), flush=True)
        time.sleep(interval)
        record = monitor.job(record.id)


def _render(snap: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    lines = snapshot_lines(snap)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", justify="right")
    table.add_column()
    for line in lines[1:]:
        key, _, value = line.partition(": ")
        if key == "progress":  # the bar and the percentage on one row
            bar = Table.grid(padding=(0, 1))
            bar.add_row(ProgressBar(total=1.0, completed=float(snap["summary"]["progress"] or 0.0), width=40),
                        value)
            table.add_row(key, bar)
        else:
            table.add_row(key, f"[red]{value}[/]" if key == "error" else value)
    return Group(f"[bold]{lines[0]}[/]", table)


def _watch_live(monitor: TrainingMonitor, record: JobRecord, interval: float) -> JobRecord:
    from rich.live import Live

    with Live(_render(snapshot(monitor, record)), refresh_per_second=4) as live:
        while not record.status.is_terminal:
            time.sleep(interval)
            record = monitor.job(record.id)
            live.update(_render(snapshot(monitor, record)))
    return record
