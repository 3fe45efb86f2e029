"""Resource samples inside a job: a daemon thread per rank appends CPU, memory and GPU use to the run dir.

Each rank writes `resources.rank<R>.jsonl`, one JSON line per interval:
    time, rank, host, pid, cpu_percent (this process and its children; 100 = one core busy),
    cpu_count (cores this process may run on), rss_bytes (process and children),
    memory_allocated_bytes (the job's memory on this node: SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU
    times the node's CPUs, else the machine's RAM), system_memory_used_bytes, system_memory_total_bytes,
    gpus: [{index, uuid, name, utilization, memory_used, memory_total}] (empty without a GPU or NVML).
The interval is HPC_TRAIN_RESOURCE_INTERVAL seconds (default 5). Besides those, a sample is written at
start (its cpu_percent is the average since the process started), at each epoch's end (`sample_if_due`,
at most one per EPOCH_SAMPLE_GAP seconds) and at stop, so a job of a few seconds still leaves a
series, not one point. Sampling never fails the job.
The thread needs the GIL: torch, numpy and scikit-learn release it in their heavy parts, but a pure-Python
loop that never does can delay samples (seen on Python 3.12) until it yields; stop() still writes one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

INTERVAL_VAR = "HPC_TRAIN_RESOURCE_INTERVAL"
DEFAULT_INTERVAL = 5.0
MIN_INTERVAL = 0.1
EPOCH_SAMPLE_GAP = 0.5  # seconds; epoch-end samples closer than this to the last one are skipped
MIB = 1024 * 1024


def resources_path(run_dir: Path, rank: int) -> Path:
    """Where rank `rank` writes its samples."""
    return Path(run_dir) / f"resources.rank{rank}.jsonl"


def sample_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between samples: HPC_TRAIN_RESOURCE_INTERVAL when it is a positive number, else 5."""
    raw = (os.environ if environ is None else environ).get(INTERVAL_VAR)
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        log.warning("%s=%r is not a positive number of seconds; sampling every %gs", INTERVAL_VAR, raw,
                    DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    return max(MIN_INTERVAL, value)


def allocated_memory_bytes(environ: Mapping[str, str] | None = None) -> int:
    """Memory SLURM gave the job on this node (its variables are in MB); the machine's RAM without SLURM."""
    env = os.environ if environ is None else environ
    try:
        if env.get("SLURM_MEM_PER_NODE"):
            return int(env["SLURM_MEM_PER_NODE"]) * MIB
        if env.get("SLURM_MEM_PER_CPU"):
            cpus = env.get("SLURM_CPUS_ON_NODE") or env.get("SLURM_CPUS_PER_TASK") or "1"
            return int(env["SLURM_MEM_PER_CPU"]) * int(cpus) * MIB
    except ValueError:
        log.warning("unreadable SLURM memory variables; reporting the machine's RAM instead")
    return int(psutil.virtual_memory().total)


def visible_gpu_indices(environ: Mapping[str, str] | None = None) -> set[int] | None:
    """The NVML indices CUDA_VISIBLE_DEVICES names, or None for all (unset, or UUIDs we do not map)."""
    raw = (os.environ if environ is None else environ).get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not all(item.isdigit() for item in items):
        return None
    return {int(item) for item in items}


class GpuProbe:
    """GPU utilisation and memory through NVML; no GPU, no driver or no pynvml gives an empty list."""

    def __init__(self, visible: set[int] | None = None) -> None:
        self.visible = visible
        self._nvml: Any = None
        self._tried = False

    @property
    def available(self) -> bool:
        """True once NVML initialised (tried on first use, then remembered either way)."""
        if not self._tried:
            self._tried = True
            self._nvml = self._init()
        return self._nvml is not None

    @staticmethod
    def _init() -> Any:
        try:
            import pynvml
        except ImportError:
            log.debug("pynvml not installed: no GPU samples")
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # no driver, no GPU: a normal case on CPU nodes
            log.debug("NVML unavailable (%s): no GPU samples", exc)
            return None
        return pynvml

    def sample(self) -> list[dict[str, Any]]:
        """One entry per visible GPU."""
        if not self.available:
            return []
        nvml = self._nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError:
            return []
        gpus = []
        for index in range(count):
            if self.visible is not None and index not in self.visible:
                continue
            try:
                gpus.append(self._device(nvml, index))
            except nvml.NVMLError as exc:  # a device that fell off the bus must not end the sampling
                log.debug("NVML query of GPU %d failed: %s", index, exc)
        return gpus

    @staticmethod
    def _device(nvml: Any, index: int) -> dict[str, Any]:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            utilization: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:  # e.g. MIG instances report no utilisation
            utilization = None
        return {"index": index, "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                "name": _text(nvml.nvmlDeviceGetName(handle)), "utilization": utilization,
                "memory_used": int(memory.used), "memory_total": int(memory.total)}


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ProcessProbe:
    """CPU and resident memory of one process and its children, measured between calls."""

    def __init__(self, pid: int | None = None) -> None:
        self.process = psutil.Process(pid)
        self.process.cpu_percent(None)  # the first call only sets the reference point
        self._children: dict[int, psutil.Process] = {}

    def average_since_start(self) -> tuple[float, int]:
        """(cpu_percent averaged since the process started, rss_bytes); the next sample() is unaffected."""
        times = self.process.cpu_times()
        busy = times.user + times.system + times.children_user + times.children_system
        elapsed = max(time.time() - self.process.create_time(), 1e-3)
        return round(100.0 * busy / elapsed, 1), int(self.process.memory_info().rss)

    def sample(self) -> tuple[float, int]:
        """(cpu_percent, rss_bytes) since the previous call; a new child counts from its first sighting."""
        cpu = self.process.cpu_percent(None)
        rss = self.process.memory_info().rss
        current: dict[int, psutil.Process] = {}
        for child in self.process.children(recursive=True):
            known = self._children.get(child.pid, child)
            try:
                cpu += known.cpu_percent(None)  # 0.0 on a child's first sighting
                rss += known.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            current[child.pid] = known
        self._children = current
        return round(cpu, 1), int(rss)


class ResourceSampler:
    """A daemon thread appending one resource sample per interval to `resources.rank<R>.jsonl`."""

    def __init__(self, run_dir: Path, rank: int, interval: float | None = None) -> None:
        self.path = resources_path(run_dir, rank)
        self.rank = rank
        self.interval = max(MIN_INTERVAL, interval) if interval is not None else sample_interval()
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._process: ProcessProbe | None = None
        self._gpus = GpuProbe(visible_gpu_indices())
        self._memory_allocated = allocated_memory_bytes()
        self._cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self._write_failed = False
        self._last_written = 0.0

    def start(self) -> Self:
        """Begin sampling in the background; returns self."""
        if self._thread is not None:
            return self
        self._process = ProcessProbe()
        self.write_sample(since_start=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"hpc-train-resources-rank{self.rank}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread and write a last sample, so even a short job leaves one."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))
        self._thread = None
        self.write_sample()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write_sample()

    def sample_if_due(self) -> None:
        """A sample now (an epoch ended), unless one was written in the last EPOCH_SAMPLE_GAP seconds."""
        if self._thread is not None and time.monotonic() - self._last_written >= min(EPOCH_SAMPLE_GAP, self.interval):
            self.write_sample()

    def sample(self, *, since_start: bool = False) -> dict[str, Any]:
        """One sample as a dict (the JSON line's content); since_start: CPU averaged over the process's life."""
        if self._process is None:
            self._process = ProcessProbe()
        cpu, rss = self._process.average_since_start() if since_start else self._process.sample()
        memory = psutil.virtual_memory()
        return {"time": time.time(), "rank": self.rank, "host": self.host, "pid": self._process.process.pid,
                "cpu_percent": cpu, "cpu_count": self._cpu_count, "rss_bytes": rss,
                "memory_allocated_bytes": self._memory_allocated,
                "system_memory_used_bytes": int(memory.total - memory.available),
                "system_memory_total_bytes": int(memory.total), "gpus": self._gpus.sample()}

    def write_sample(self, *, since_start: bool = False) -> None:
        """Append one sample; a failure is logged once and never raised into the job."""
        with self._lock:  # stop(), the thread and epoch ends may all write
            self._last_written = time.monotonic()
            try:
                line = json.dumps(self.sample(since_start=since_start))
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as handle:
                    handle.write(line + "\n")
            except Exception as exc:  # noqa: BLE001 - monitoring must never end a training run
                if not self._write_failed:
                    log.warning("resource sample for rank %d not written to %s: %s", self.rank, self.path, exc)
                self._write_failed = True
