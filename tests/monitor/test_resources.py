"""ResourceSampler on this machine: samples written per interval and on stop, SLURM memory variables,
and the NVML path (an empty GPU list without a GPU or pynvml; a real list when a GPU is there)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import psutil
import pytest

from hpc_train.runtime import resources
from hpc_train.runtime.resources import (
    GpuProbe,
    ResourceSampler,
    allocated_memory_bytes,
    resources_path,
    sample_interval,
    visible_gpu_indices,
)

SAMPLE_KEYS = {"time", "rank", "host", "pid", "cpu_percent", "cpu_count", "rss_bytes", "memory_allocated_bytes",
               "system_memory_used_bytes", "system_memory_total_bytes", "gpus"}


def nvml_gpu_count() -> int:
    """GPUs NVML sees here; 0 without pynvml, driver or device."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001 - any failure means: no usable GPU here
        return 0


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sampler_writes_samples_while_running_and_one_on_stop(tmp_path: Path) -> None:
    sampler = ResourceSampler(tmp_path, rank=3, interval=0.1)
    block = b"x" * 4_000_000
    with sampler:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            # a busy core for cpu_percent to see; hashing releases the GIL, as numpy, torch and sklearn
            # do in their heavy parts (a pure-Python loop can keep the sampler thread waiting)
            hashlib.sha256(block).digest()
    path = resources_path(tmp_path, 3)
    assert path.name == "resources.rank3.jsonl"
    samples = read_lines(path)
    assert len(samples) >= 3  # a few periodic samples and the final one
    for sample in samples:
        assert set(sample) == SAMPLE_KEYS
        assert sample["rank"] == 3 and sample["cpu_percent"] >= 0
        assert 0 < sample["rss_bytes"] <= sample["system_memory_total_bytes"]
        assert 0 < sample["system_memory_used_bytes"] <= sample["system_memory_total_bytes"]
        assert isinstance(sample["gpus"], list)
    assert max(s["cpu_percent"] for s in samples) > 10
    count = len(samples)
    time.sleep(0.3)
    assert len(read_lines(path)) == count, "the thread must be gone after stop()"


def test_short_run_still_leaves_a_series(tmp_path: Path) -> None:
    """One sample at start (CPU averaged since the process started), one at stop: never a lone point."""
    block = b"x" * 4_000_000
    with ResourceSampler(tmp_path, rank=0, interval=60):
        for _ in range(20):
            hashlib.sha256(block).digest()
    samples = read_lines(resources_path(tmp_path, 0))
    assert len(samples) == 2
    assert samples[0]["time"] < samples[1]["time"]
    # this process has been busy (imports, earlier tests) since it started: the start sample says so
    assert samples[0]["cpu_percent"] > 0


def test_epoch_end_samples_are_spaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = ResourceSampler(tmp_path, rank=0, interval=60)
    sampler.sample_if_due()  # not started: nothing to add to
    with sampler:
        sampler.sample_if_due()  # just after the start sample: skipped
        monkeypatch.setattr(resources, "EPOCH_SAMPLE_GAP", 0.05)
        time.sleep(0.06)
        sampler.sample_if_due()
        sampler.sample_if_due()  # again at once: skipped
    assert len(read_lines(resources_path(tmp_path, 0))) == 3  # start, one epoch end, stop


def test_a_failing_write_never_reaches_the_job(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the run directory should be")
    with ResourceSampler(blocker, rank=0, interval=0.05):
        time.sleep(0.2)
    assert sum("not written" in r.getMessage() for r in caplog.records) == 1  # logged once, not per sample


def test_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert sample_interval({}) == resources.DEFAULT_INTERVAL
    assert sample_interval({"HPC_TRAIN_RESOURCE_INTERVAL": "0.5"}) == 0.5
    assert sample_interval({"HPC_TRAIN_RESOURCE_INTERVAL": "0.001"}) == resources.MIN_INTERVAL
    assert sample_interval({"HPC_TRAIN_RESOURCE_INTERVAL": "soon"}) == resources.DEFAULT_INTERVAL
    assert sample_interval({"HPC_TRAIN_RESOURCE_INTERVAL": "-1"}) == resources.DEFAULT_INTERVAL
    monkeypatch.setenv("HPC_TRAIN_RESOURCE_INTERVAL", "2.5")
    assert ResourceSampler(tmp_path, 0).interval == 2.5
    assert ResourceSampler(tmp_path, 0, interval=7).interval == 7


def test_allocated_memory_follows_slurm_variables() -> None:
    mib = 1024 * 1024
    assert allocated_memory_bytes({"SLURM_MEM_PER_NODE": "2048"}) == 2048 * mib
    assert allocated_memory_bytes({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "4"}) == 4000 * mib
    assert allocated_memory_bytes({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "2"}) == 2000 * mib
    assert allocated_memory_bytes({}) == psutil.virtual_memory().total
    assert allocated_memory_bytes({"SLURM_MEM_PER_NODE": "lots"}) == psutil.virtual_memory().total


def test_cuda_visible_devices_selects_nvml_indices() -> None:
    assert visible_gpu_indices({}) is None
    assert visible_gpu_indices({"CUDA_VISIBLE_DEVICES": "0,2"}) == {0, 2}
    assert visible_gpu_indices({"CUDA_VISIBLE_DEVICES": ""}) == set()
    assert visible_gpu_indices({"CUDA_VISIBLE_DEVICES": "GPU-8f2e1c"}) is None  # UUIDs: all, unmapped


def test_without_pynvml_the_gpu_list_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now raises ImportError
    probe = GpuProbe()
    assert probe.sample() == [] and probe.sample() == []
    assert probe.available is False


def test_nvml_init_failure_is_tried_once_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynvml

    calls = []

    def no_driver() -> None:
        calls.append(1)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    probe = GpuProbe()
    assert probe.sample() == [] and probe.sample() == []
    assert calls == [1]


@pytest.mark.skipif(nvml_gpu_count() > 0, reason="a GPU is visible to NVML here; test_gpu_samples covers it")
def test_no_gpu_here_gives_an_empty_list(tmp_path: Path) -> None:
    with ResourceSampler(tmp_path, rank=0, interval=60):
        pass
    assert read_lines(resources_path(tmp_path, 0))[0]["gpus"] == []


@pytest.mark.gpu
@pytest.mark.skipif(nvml_gpu_count() == 0, reason="no NVIDIA GPU visible to NVML (needs a GPU node and driver)")
def test_gpu_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with ResourceSampler(tmp_path, rank=0, interval=60):
        pass
    gpus = read_lines(resources_path(tmp_path, 0))[0]["gpus"]
    assert len(gpus) == nvml_gpu_count()
    for gpu in gpus:
        assert gpu["name"] and isinstance(gpu["index"], int)
        assert 0 <= gpu["memory_used"] <= gpu["memory_total"] and gpu["memory_total"] > 0
        assert gpu["utilization"] is None or 0 <= gpu["utilization"] <= 100
