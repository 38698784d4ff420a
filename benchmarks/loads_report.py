"""The load benchmark's results as Markdown and JSON, and the targets they are held to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.environment import environment_markdown
from benchmarks.loads import (
    CURRENT_SNAPSHOT_HISTORY,
    SNAPSHOT_LAG,
    LoadCase,
    LoadResults,
    speedup,
    versus_eventsourcing,
)
from benchmarks.snapshot_sizes import SnapshotSize

TARGET_SPEEDUP_10K = 1000.0
TARGET_REPLAY_RATIO = 2.0
TARGET_FLATNESS = 1.5
"""Snapshot load at the longest history / at the shortest: at most this is "flat"."""


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool | None  # None: not measured in this run


def flatness(results: LoadResults, engine: str) -> float | None:
    """sekiban snapshot load time at the longest history / at the shortest."""
    histories = results.histories(engine)
    first = results.get(engine, "sekiban", True, histories[0]) if histories else None
    last = results.get(engine, "sekiban", True, histories[-1]) if histories else None
    return last.median_ms / first.median_ms if first and last and first is not last else None


def load_targets(results: LoadResults) -> list[Target]:
    """The issue's load targets, per store, as measured in `results`."""
    targets = []
    for lag, where in ((SNAPSHOT_LAG, f"{SNAPSHOT_LAG} events before the end"), (0, "at the end")):
        s = speedup(results, "sqlite", "sekiban", 10_000, lag)
        targets.append(
            Target(
                "10,000-event load with a snapshot >= 1,000x faster than full replay "
                f"(SQLite, snapshot {where})",
                f"{s:,.0f}x" if s else "not measured",
                s >= TARGET_SPEEDUP_10K if s else None,
            )
        )
    for engine in results.engines():
        histories = results.histories(engine)
        longest = histories[-1]
        replay = versus_eventsourcing(results, engine, False, longest)
        if replay is not None:
            targets.append(
                Target(
                    f"full replay >= 2x eventsourcing's speed ({engine}, {longest:,} events)",
                    f"{replay:.2f}x",
                    replay >= TARGET_REPLAY_RATIO,
                )
            )
        ratios = [
            r
            for h in histories
            if (r := versus_eventsourcing(results, engine, True, h)) is not None
        ]
        if ratios:
            targets.append(
                Target(
                    f"snapshot load no slower than eventsourcing's ({engine}, every history)",
                    f"{min(ratios):.2f}x to {max(ratios):.2f}x as fast",
                    min(ratios) >= 1.0,
                )
            )
        flat = flatness(results, engine)
        if flat is not None:
            targets.append(
                Target(
                    f"snapshot load flat in history length ({engine}: "
                    f"{histories[-1]:,} vs {histories[0]:,} events)",
                    f"{flat:.2f}x the time",
                    flat <= TARGET_FLATNESS,
                )
            )
    return targets


def targets_markdown(targets: list[Target]) -> list[str]:
    lines = ["| target | measured | met |", "|---|--:|:-:|"]
    for t in targets:
        met = "n/a" if t.met is None else ("yes" if t.met else "**no**")
        lines.append(f"| {t.name} | {t.measured} | {met} |")
    return lines


def loads_markdown(
    env: dict[str, Any], results: LoadResults, sizes: list[SnapshotSize], plots: list[str]
) -> str:
    lines = [
        "# Aggregate load time: snapshots, and sekiban vs eventsourcing",
        "",
        *environment_markdown(env, results.engines()),
        "",
        "Each store holds, per history length n, one account of n events (opened, then "
        f"deposits) with a snapshot at version n - {SNAPSHOT_LAG}, in each framework. Timed: "
        "sekiban `EventReplayOptimizer.load` without / with the snapshot store (what "
        "`SekibanExecutor.load` runs); eventsourcing `Repository.get` without / with "
        f"its snapshot store (snapshot taken by `app.take_snapshot(id, version=n - "
        f"{SNAPSHOT_LAG})`). Every load is checked and timed alone, after a warm-up, in "
        "rounds over all cases; figures are medians in milliseconds. Speedup = full replay "
        "/ snapshot load; es/sekiban = eventsourcing's time / sekiban's (above 1: sekiban "
        "is faster).",
        "",
        *[f"![{p}]({p})" for p in plots],
        "",
        "## Targets",
        "",
        *targets_markdown(load_targets(results)),
        "",
    ]
    for note in results.notes:
        lines.append(f"- {note}")
    if results.notes:
        lines.append("")
    for engine in results.engines():
        lines += [f"## {engine}", "", *_engine_table(results, engine), ""]
        lines += _current_snapshot_lines(results, engine)
        if any(c.peak_bytes is not None for c in results.cases if c.engine == engine):
            lines += [
                "Peak Python heap of one load (KiB, tracemalloc; memory C libraries allocate "
                "for themselves is not seen):",
                "",
                *_memory_table(results, engine),
                "",
            ]
            if engine in ("postgres", "cosmos"):
                lines += [
                    "sekiban's figures here include asyncio's 256 KiB socket receive buffer "
                    "(`sock.recv(262144)` in the event loop, freed at once), whatever the "
                    "history; eventsourcing's psycopg reads with blocking sockets.",
                    "",
                ]
    if sizes:
        lines += ["## Snapshot size", "", *_sizes_table(sizes), ""]
    return "\n".join(lines)


def _current_snapshot_lines(results: LoadResults, engine: str) -> list[str]:
    """The loads of an account whose snapshot is at its last event, if measured."""
    h = CURRENT_SNAPSHOT_HISTORY
    parts = []
    for framework in ("sekiban", "eventsourcing"):
        case = results.get(engine, framework, True, h, lag=0)
        s = speedup(results, engine, framework, h, lag=0)
        if case and s:
            parts.append(f"{framework} {_ms(case.median_ms)} ms ({s:,.0f}x faster than replay)")
    if not parts:
        return []
    return [f"With the snapshot at the last of {h:,} events: {'; '.join(parts)}.", ""]


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:,.1f}"


def _engine_table(results: LoadResults, engine: str) -> list[str]:
    lines = [
        "| history | sekiban full | sekiban snapshot | speedup | eventsourcing full "
        "| eventsourcing snapshot | speedup | full: es/sekiban | snapshot: es/sekiban |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for h in results.histories(engine):
        cells = [f"{h:,}"]
        for framework in ("sekiban", "eventsourcing"):
            for snapshot in (False, True):
                case = results.get(engine, framework, snapshot, h)
                cells.append(_ms(case.median_ms) if case else "-")
            s = speedup(results, engine, framework, h)
            cells.append(f"{s:,.0f}x" if s else "-")
        for snapshot in (False, True):
            r = versus_eventsourcing(results, engine, snapshot, h)
            cells.append(f"{r:.2f}x" if r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _memory_table(results: LoadResults, engine: str) -> list[str]:
    lines = [
        "| history | sekiban full | sekiban snapshot | eventsourcing full "
        "| eventsourcing snapshot |",
        "|--:|--:|--:|--:|--:|",
    ]
    for h in results.histories(engine):
        cells = [f"{h:,}"]
        for framework in ("sekiban", "eventsourcing"):
            for snapshot in (False, True):
                case = results.get(engine, framework, snapshot, h)
                peak = case.peak_bytes if case else None
                cells.append(f"{peak / 1024:,.0f}" if peak is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _sizes_table(sizes: list[SnapshotSize]) -> list[str]:
    lines = [
        "`account` is the benchmark account (owner, balance, count); `ledger` keeps every "
        "transaction, so it grows with the history. Bytes of the stored payload: raw JSON, "
        "zlib (level 6), and what the default `SnapshotConfiguration` stores "
        "(`compress_above_bytes=16384`); times in ms to take and to restore each.",
        "",
        "| payload | history | raw | zlib | stored | ratio | take raw | take zlib "
        "| restore raw | restore zlib |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in sizes:
        lines.append(
            f"| {s.payload} | {s.history:,} | {s.raw_bytes:,} | {s.compressed_bytes:,} "
            f"| {s.stored_bytes:,} | {s.raw_bytes / s.compressed_bytes:.1f}x "
            f"| {_ms(s.take_raw_ms)} | {_ms(s.take_compressed_ms)} "
            f"| {_ms(s.restore_raw_ms)} | {_ms(s.restore_compressed_ms)} |"
        )
    return lines


def _case_summary(case: LoadCase) -> dict[str, Any]:
    """A case without its thousands of samples: their count, median and spread."""
    ms = sorted(x * 1000 for x in case.seconds)
    return {
        "engine": case.engine,
        "framework": case.framework,
        "snapshot": case.snapshot,
        "history": case.history,
        "lag": case.lag if case.snapshot else None,
        "runs": len(ms),
        "median_ms": round(case.median_ms, 5),
        "min_ms": round(ms[0], 5),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 5),
        "max_ms": round(ms[-1], 5),
        "peak_bytes": case.peak_bytes,
    }


def loads_document(
    env: dict[str, Any], results: LoadResults, sizes: list[SnapshotSize]
) -> dict[str, Any]:
    """The load results as JSON-ready data: per case the median and spread of its runs,
    the ratios and the targets."""
    cases = [_case_summary(c) for c in results.cases]
    ratios = [
        {
            "engine": engine,
            "history": h,
            "sekiban_speedup": speedup(results, engine, "sekiban", h),
            "eventsourcing_speedup": speedup(results, engine, "eventsourcing", h),
            "full_replay_eventsourcing_over_sekiban": versus_eventsourcing(
                results, engine, False, h
            ),
            "snapshot_load_eventsourcing_over_sekiban": versus_eventsourcing(
                results, engine, True, h
            ),
        }
        for engine in results.engines()
        for h in results.histories(engine)
    ]
    return {
        "environment": env,
        "snapshot_lag": SNAPSHOT_LAG,
        "notes": results.notes,
        "cases": cases,
        "ratios": ratios,
        "targets": [asdict(t) for t in load_targets(results)],
        "snapshot_sizes": [asdict(s) for s in sizes],
    }
