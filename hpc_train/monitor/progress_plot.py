"""The training-progress figure: loss, accuracy, throughput per epoch and CPU/GPU use over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIGSIZE = (12.0, 8.0)
DPI = 100
MAX_RANK_LINES = 8  # beyond this the CPU panel shows the sum over ranks only
MARKER_BELOW = 30  # series with fewer samples than this mark each one (a line alone hides how few there are)
TOO_SHORT = "too short to sample"


def new_figure(size: tuple[float, float]) -> Any:
    """A figure drawn by Agg without pyplot: no display needed, no global backend state touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _series(metrics: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the metric lines that carry `key` (a restarted job may repeat epochs: last wins)."""
    by_epoch: dict[float, float] = {}
    for index, record in enumerate(metrics):
        value = record.get(key)
        if value is None:
            continue
        epoch = record.get("epoch")
        by_epoch[float(epoch if epoch is not None else index + 1)] = float(value)
    epochs = sorted(by_epoch)
    return epochs, [by_epoch[e] for e in epochs]


def _epoch_panel(ax: Any, metrics: Sequence[dict[str, Any]], keys: Sequence[tuple[str, str]], title: str,
                 ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for key, label in keys:
        epochs, values = _series(metrics, key)
        if values:
            ax.plot(epochs, values, marker="o", label=label)  # markers: a one-epoch job is one point
            drawn = True
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="best")
    else:
        note(ax, f"no {title.lower()} recorded yet")


def note(ax: Any, text: str) -> None:
    """A grey message in the middle of an empty panel."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def _resource_panel(ax: Any, history: dict[int, list[dict[str, Any]]]) -> None:
    ax.set_title("CPU / GPU use")
    ax.set_xlabel("time since first sample (s)")
    ax.set_ylabel("%  (CPU: 100 = one core)")
    ax.grid(True, alpha=0.3)
    times = [s["time"] for samples in history.values() for s in samples if s.get("time") is not None]
    if not times:
        note(ax, "no resource samples")
        return
    start = min(times)
    ranks = sorted(history)
    most = max(sum(1 for s in history[rank] if s.get("time") is not None) for rank in ranks)
    if most < 2:
        # One sample a rank is no series: a line through it would claim a steady use nobody measured.
        note(ax, f"{TOO_SHORT}: {most} sample per rank")
    if len(ranks) <= MAX_RANK_LINES:
        for rank in ranks:
            samples = [s for s in history[rank] if s.get("time") is not None]
            ax.plot([s["time"] - start for s in samples], [s.get("cpu_percent") or 0.0 for s in samples],
                    label=f"CPU rank {rank}", marker="o" if len(samples) < MARKER_BELOW else None)
    else:
        _plot_cpu_sum(ax, history, start)
    gpu_series: dict[tuple[str, Any], list[tuple[float, float]]] = {}
    for samples in history.values():
        for sample in samples:
            for gpu in sample.get("gpus") or []:
                if gpu.get("utilization") is not None and sample.get("time") is not None:
                    key = (str(sample.get("host")), gpu.get("index"))
                    gpu_series.setdefault(key, []).append((sample["time"] - start, float(gpu["utilization"])))
    for (host, index), points in sorted(gpu_series.items(), key=lambda kv: str(kv[0]))[:MAX_RANK_LINES]:
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], linestyle="--", label=f"GPU {index} ({host})",
                marker="s" if len(points) < MARKER_BELOW else None)
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize="small")


def _plot_cpu_sum(ax: Any, history: dict[int, list[dict[str, Any]]], start: float) -> None:
    """Many ranks: the sum over ranks, each sample binned to the nearest second."""
    totals: dict[int, float] = {}
    for samples in history.values():
        for sample in samples:
            if sample.get("time") is not None:
                second = round(sample["time"] - start)
                totals[second] = totals.get(second, 0.0) + float(sample.get("cpu_percent") or 0.0)
    seconds = sorted(totals)
    ax.plot(seconds, [totals[s] for s in seconds], label=f"CPU, sum of {len(history)} ranks")


def progress_figure(*, title: str, metrics: Sequence[dict[str, Any]],
                    history: dict[int, list[dict[str, Any]]]) -> Any:
    """The four panels (loss, accuracy, throughput, CPU/GPU use; in fig.axes in that order) as a Figure."""
    fig = new_figure(FIGSIZE)
    axes = fig.subplots(2, 2)
    _epoch_panel(axes[0][0], metrics, [("loss", "train"), ("val_loss", "validation")], "Loss", "loss")
    _epoch_panel(axes[0][1], metrics, [("accuracy", "train"), ("val_accuracy", "validation")],
                 "Accuracy", "accuracy")
    _epoch_panel(axes[1][0], metrics, [("samples_per_s", "samples/s")], "Throughput", "samples / s")
    _resource_panel(axes[1][1], history)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def render_progress(path: Path, *, title: str, metrics: Sequence[dict[str, Any]],
                    history: dict[int, list[dict[str, Any]]]) -> Path:
    """Draw the four panels into a PNG at path (FIGSIZE at DPI); returns path."""
    fig = progress_figure(title=title, metrics=metrics, history=history)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
