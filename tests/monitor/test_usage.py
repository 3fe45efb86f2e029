"""Merging the ranks' latest samples into one usage view (pure functions on hand-written samples)."""

from __future__ import annotations

import json
from pathlib import Path

from hpc_train.monitor.usage import format_bytes, latest_sample, merge_latest, usage_of

GIB = 1024 ** 3


def sample(rank: int, host: str, cpu: float, rss: int, allocated: int, gpus: list | None = None,
           t: float = 100.0) -> dict:
    return {"time": t + rank, "rank": rank, "host": host, "cpu_percent": cpu, "rss_bytes": rss,
            "memory_allocated_bytes": allocated, "gpus": gpus or []}


def gpu(index: int, util: int | None, uuid: str) -> dict:
    return {"index": index, "uuid": uuid, "name": "NVIDIA H100", "utilization": util,
            "memory_used": GIB, "memory_total": 80 * GIB}


def test_ranks_add_up_and_node_allocations_count_once() -> None:
    latest = [sample(0, "n1", 90.0, 2 * GIB, 8 * GIB, [gpu(0, 80, "a"), gpu(1, 100, "b")]),
              sample(1, "n1", 110.0, 2 * GIB, 8 * GIB, [gpu(0, 80, "a"), gpu(1, 100, "b")]),
              sample(2, "n2", 50.0, 2 * GIB, 8 * GIB, [gpu(0, 60, "c")])]
    usage = merge_latest(latest, samples=30)
    assert usage["cpu"] == 250.0
    assert usage["memory_used_bytes"] == 6 * GIB and usage["memory_total_bytes"] == 16 * GIB
    assert usage["memory"] == "6.0GB/16.0GB"
    assert [(g["host"], g["index"]) for g in usage["gpu"]] == [("n1", 0), ("n1", 1), ("n2", 0)]
    assert usage["gpu_util"] == 80.0
    assert (usage["samples"], usage["ranks"], usage["hosts"], usage["time"]) == (30, 3, ["n1", "n2"], 102.0)


def test_no_samples_gives_empty_values() -> None:
    usage = merge_latest([], samples=0)
    assert usage["cpu"] is None and usage["memory"] is None and usage["gpu"] == [] and usage["gpu_util"] is None
    assert usage_of(Path("/nonexistent/run")) == usage


def test_gpu_without_utilisation_is_listed_but_not_averaged() -> None:
    usage = merge_latest([sample(0, "n1", 10.0, GIB, 2 * GIB, [gpu(0, None, "m")])], samples=1)
    assert len(usage["gpu"]) == 1 and usage["gpu_util"] is None


def test_latest_sample_skips_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "resources.rank0.jsonl"
    lines = [json.dumps(sample(0, "n1", float(i), GIB, 2 * GIB)) for i in range(2000)]
    path.write_text("\n".join(lines) + "\n" + '{"time": 1, "cpu_per')
    last, count = latest_sample(path)
    assert count == 2000 and last is not None and last["cpu_percent"] == 1999.0


def test_format_bytes() -> None:
    assert format_bytes(6 * GIB) == "6.0GB"
    assert format_bytes(512 * 1024 * 1024) == "512MB"
    assert format_bytes(None) == "?"
