"""A job of a few seconds: its resource samples are a series (start, epoch ends, stop), and the CPU/GPU panel
of its plot shows them as points, or says it is too short to sample; never one flat line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from png_checks import assert_png

from hpc_train.cli.main import main
from hpc_train.monitor.progress_plot import DPI, FIGSIZE, TOO_SHORT, progress_figure, render_progress
from hpc_train.monitor.usage import usage_history
from hpc_train.rundir import RunDirectory

SPEC = """name: short
model: {type: neural_network, hidden_sizes: [16]}
data: {train_path: "sklearn:iris", batch_size: 16}
training: {epochs: 6, seed: 0}
"""


def resource_axes(history: dict[int, list[dict[str, Any]]]) -> Any:
    fig = progress_figure(title="t", metrics=[], history=history)
    return fig.axes[3]


def panel_texts(ax: Any) -> list[str]:
    return [text.get_text() for text in ax.texts]


def test_a_three_second_job_plots_a_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPC_TRAIN_RESOURCE_INTERVAL", raising=False)  # the default 5 s: longer than the job
    (tmp_path / "spec.yaml").write_text(SPEC)
    started = time.monotonic()
    assert main(["run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    took = time.monotonic() - started
    history = usage_history(tmp_path / "run")
    samples = history[0]
    # start and stop at least (epoch ends too when they are 0.5 s apart): a series spanning the training
    assert len(samples) >= 2, f"{len(samples)} samples in a {took:.1f} s job"
    times = [s["time"] for s in samples]
    metrics = RunDirectory(tmp_path / "run").metrics()
    assert times == sorted(times) and times[0] < metrics[0]["time"] and times[-1] > metrics[-1]["time"]
    ax = resource_axes(history)
    (cpu,) = [line for line in ax.get_lines() if line.get_label() == "CPU rank 0"]
    assert len(cpu.get_xdata()) == len(samples) and cpu.get_marker() == "o"  # each sample visible
    assert list(cpu.get_ydata()) == [s["cpu_percent"] for s in samples]
    assert not any(TOO_SHORT in text for text in panel_texts(ax))
    assert len(metrics) == 6
    path = render_progress(tmp_path / "short.png", title="short", metrics=metrics, history=history)
    assert_png(path, int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def test_one_sample_is_said_to_be_too_short(tmp_path: Path) -> None:
    now = time.time()
    one = {0: [{"time": now, "cpu_percent": 87.0, "gpus": [{"index": 0, "utilization": 40}]}],
           1: [{"time": now + 0.1, "cpu_percent": 91.0, "gpus": []}]}
    ax = resource_axes(one)
    assert any(TOO_SHORT in text for text in panel_texts(ax)), panel_texts(ax)
    for line in ax.get_lines():
        assert len(line.get_xdata()) == 1 and line.get_marker() in ("o", "s")  # a point, not a line
    two = {0: [{"time": now, "cpu_percent": 87.0}, {"time": now + 1, "cpu_percent": 95.0}]}
    assert not any(TOO_SHORT in text for text in panel_texts(resource_axes(two)))
    path = render_progress(tmp_path / "one.png", title="one", metrics=[], history=one)
    assert_png(path, int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
