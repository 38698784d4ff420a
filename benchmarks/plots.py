"""PNG plots of the load benchmark (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.loads import LoadCase, LoadResults

# (framework, snapshot) -> label and line style; one colour per framework.
LINES = {
    ("sekiban", False): ("sekiban, full replay", "#1f6fb4", "-", "o"),
    ("sekiban", True): ("sekiban, snapshot", "#1f6fb4", "--", "s"),
    ("eventsourcing", False): ("eventsourcing, full replay", "#e0701b", "-", "o"),
    ("eventsourcing", True): ("eventsourcing, snapshot", "#e0701b", "--", "s"),
}


def plot_load_times(results: LoadResults, path: Path) -> None:
    """Median load time against history length, log-log, one panel per store."""
    _plot(
        results,
        path,
        value=lambda case: case.median_ms,
        ylabel="load time (ms, median)",
        title="Aggregate load time: snapshot + {lag} events vs full replay",
    )


def plot_peak_memory(results: LoadResults, path: Path) -> None:
    """Peak Python heap of one load against history length, log-log, per store."""
    _plot(
        results,
        path,
        value=lambda case: case.peak_bytes / 1024 if case.peak_bytes else None,
        ylabel="peak memory of one load (KiB, tracemalloc)",
        title="Peak memory of an aggregate load",
    )


def _plot(
    results: LoadResults,
    path: Path,
    *,
    value: Callable[[LoadCase], float | None],
    ylabel: str,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.loads import SNAPSHOT_LAG

    engines = results.engines()
    columns = min(len(engines), 2)
    rows = -(-len(engines) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(6.2 * columns, 4.4 * rows), squeeze=False, sharey=True
    )
    for ax, engine in zip(axes.flat, engines, strict=False):
        for (framework, snapshot), (label, colour, style, marker) in LINES.items():
            points = [
                (case.history, value(case))
                for case in results.cases
                if (case.engine, case.framework, case.snapshot) == (engine, framework, snapshot)
            ]
            points = [(x, y) for x, y in sorted(points) if y is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, color=colour, marker=marker, label=label, linewidth=1.8)
        _style(ax, engine, ylabel)
    for ax in list(axes.flat)[len(engines) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, frameon=False)
    figure.suptitle(title.format(lag=SNAPSHOT_LAG), fontsize=13)
    figure.tight_layout(rect=(0, 0.06, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _style(ax: Any, engine: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(engine)
    ax.set_xlabel("events in the aggregate's history")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
