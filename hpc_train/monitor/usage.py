"""Reading the per-rank resource samples back and merging the latest of each rank into one view.

How ranks combine (each rank samples its own process tree):
    cpu     the sum of the ranks' cpu_percent, as `top` counts it (100 = one core busy)
    memory  used: the sum of the ranks' resident memory; total: the memory allocated on each node the
            job runs on, counted once per host (ranks on one node share that node's allocation)
    gpu     each GPU once per host (several ranks may see the same device); gpu_util is their mean
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RANK_FILE = re.compile(r"resources\.rank(\d+)\.jsonl")
TAIL_BYTES = 64 * 1024  # enough for the last sample even with many GPUs in it
GIB = 1024 ** 3
MIB = 1024 ** 2


def rank_files(run_dir: Path) -> dict[int, Path]:
    """rank -> its resources file, in rank order."""
    if not run_dir.is_dir():
        return {}
    found = {int(m.group(1)): p for p in run_dir.iterdir() if (m := RANK_FILE.fullmatch(p.name))}
    return dict(sorted(found.items()))


def _parse_lines(text: str) -> list[dict[str, Any]]:
    samples = []
    for line in text.splitlines():
        try:
            sample = json.loads(line)
        except ValueError:  # a line being written, or the cut first line of a tail
            continue
        if isinstance(sample, dict):
            samples.append(sample)
    return samples


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Every complete sample of one rank file."""
    try:
        return _parse_lines(path.read_text())
    except OSError:
        return []


def latest_sample(path: Path) -> tuple[dict[str, Any] | None, int]:
    """(the last complete sample, the number of samples) without parsing the whole file."""
    try:
        with path.open("rb") as handle:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return None, 0
    samples = _parse_lines(tail)
    return (samples[-1] if samples else None), count


def format_bytes(value: float | None) -> str:
    """'6.0GB' from bytes (1GB = 1024MB, as SLURM counts); '512MB' under a gigabyte."""
    if value is None:
        return "?"
    if value >= GIB:
        return f"{value / GIB:.1f}GB"
    return f"{value / MIB:.0f}MB"


def empty_usage() -> dict[str, Any]:
    """The usage of a job that has not sampled anything yet."""
    return {"cpu": None, "memory": None, "memory_used_bytes": None, "memory_total_bytes": None, "gpu": [],
            "gpu_util": None, "samples": 0, "ranks": 0, "hosts": [], "time": None}


def merge_latest(latest: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """One usage view from the latest sample of every rank (see the module docstring for the sums)."""
    if not latest:
        return {**empty_usage(), "samples": samples}
    cpu = sum(float(s.get("cpu_percent") or 0.0) for s in latest)
    used = sum(int(s.get("rss_bytes") or 0) for s in latest)
    allocated_by_host: dict[str, int] = {}
    gpus_by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for sample in sorted(latest, key=lambda s: s.get("time") or 0.0):  # the newest view of a shared GPU wins
        host = str(sample.get("host", "?"))
        allocated_by_host[host] = int(sample.get("memory_allocated_bytes") or 0)
        for gpu in sample.get("gpus") or []:
            key = (host, str(gpu.get("uuid") or gpu.get("index")))
            gpus_by_key[key] = {**gpu, "host": host}
    total = sum(allocated_by_host.values()) or None
    gpus = sorted(gpus_by_key.values(), key=lambda g: (g["host"], g.get("index") or 0))
    utilizations = [g["utilization"] for g in gpus if g.get("utilization") is not None]
    return {
        "cpu": round(cpu, 1),
        "memory": f"{format_bytes(used)}/{format_bytes(total)}",
        "memory_used_bytes": used,
        "memory_total_bytes": total,
        "gpu": gpus,
        "gpu_util": round(sum(utilizations) / len(utilizations), 1) if utilizations else None,
        "samples": samples,
        "ranks": len(latest),
        "hosts": sorted(allocated_by_host),
        "time": max(float(s.get("time") or 0.0) for s in latest),
    }


def usage_of(run_dir: Path) -> dict[str, Any]:
    """The merged latest usage of a run directory; empty values before the first sample."""
    latest: list[dict[str, Any]] = []
    samples = 0
    for path in rank_files(run_dir).values():
        sample, count = latest_sample(path)
        samples += count
        if sample is not None:
            latest.append(sample)
    return merge_latest(latest, samples)


def usage_history(run_dir: Path) -> dict[int, list[dict[str, Any]]]:
    """rank -> all its samples, for plots."""
    return {rank: read_samples(path) for rank, path in rank_files(run_dir).items()}
