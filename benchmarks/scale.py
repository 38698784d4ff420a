"""`python -m benchmarks.scale`: how sekiban scales, plotted for docs/performance.md.

- load time against history length (10 to 1,000,000 events) on SQLite, full replay
  and from a snapshot `SNAPSHOT_LAG` events before the end (`EventReplayOptimizer.load`);
- memory per cached aggregate: the Python heap (tracemalloc) that `CACHED` loaded
  aggregates keep alive, divided by `CACHED`, for the fixed-size account and for the
  ledger whose state grows with its history;
- snapshot size against state size: the stored payload of `take_snapshot` raw and
  zlib-compressed, against the state's own JSON size, for both payloads;
- command latency through `SekibanExecutor.command` (load from snapshot, decide,
  append, maybe snapshot) per store, p50 / p99 over `--commands` sequential commands
  on one account with a 1,000-event history and a snapshot every 100 events.

`make bench` runs it; results go to benchmarks/results/scale.{md,json} and the plots
to benchmarks/results/ and docs/img/ (`--images`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.domains import (
    AccountProjector,
    ActiveAccount,
    DepositMany,
    account_keys,
    bench_domain,
)
from benchmarks.engines import engines_for
from benchmarks.environment import environment, environment_markdown, load_average
from benchmarks.loads import SNAPSHOT_LAG
from benchmarks.seeding import seed_sekiban
from benchmarks.snapshot_sizes import ledger, measure_snapshot_sizes
from benchmarks.timing import median, time_calls
from sekiban import Aggregate, AggregatePayload, SekibanExecutor, Serializer, SortableUniqueId
from sekiban.loading import EventReplayOptimizer
from sekiban.snapshot import SnapshotConfiguration

HISTORIES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)
MEMORY_HISTORIES = (10, 100, 1_000, 10_000)
CACHED = 200
RESULTS = Path("benchmarks/results")


@dataclass
class ScaleResults:
    loads: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[dict[str, Any]] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)


async def load_curve(histories: tuple[int, ...], budget_s: float) -> list[dict[str, Any]]:
    """Median load time per history, full replay and from a snapshot, on SQLite."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="sekiban-scale-") as directory:
        (engine,) = engines_for(["sqlite"], Path(directory))
        async with engine.sekiban_stores() as stores:
            serializer = Serializer(bench_domain())
            projector = AccountProjector()
            replay = EventReplayOptimizer(stores.events, serializer)
            snap = EventReplayOptimizer(stores.events, serializer, stores.snapshots)
            for history in histories:
                print(f"scale: {history:,}-event history", file=sys.stderr)
                keys = await seed_sekiban(
                    stores, serializer, history, snapshot_at=history - SNAPSHOT_LAG or None
                )
                for snapshot, optimizer in ((False, replay), (True, snap)):

                    async def load(
                        optimizer: EventReplayOptimizer = optimizer, keys: Any = keys
                    ) -> None:
                        await optimizer.load(projector, keys)

                    samples = await time_calls(load, budget_s=budget_s, min_runs=3, max_runs=500)
                    rows.append(
                        {"history": history, "snapshot": snapshot, "ms": median(samples) * 1000}
                    )
    return rows


def cached_memory(histories: tuple[int, ...]) -> list[dict[str, Any]]:
    """Bytes of Python heap per aggregate held in memory, account and ledger."""
    projector = AccountProjector()
    rows = []
    for history in histories:
        for name in ("account", "ledger"):
            count = CACHED if name == "account" or history <= 1_000 else 20

            def payload(name: str = name, history: int = history) -> AggregatePayload:
                if name == "account":
                    return ActiveAccount(owner="bench", balance=history, transactions=history)
                return ledger(history)

            gc.collect()
            tracemalloc.start()
            try:
                before, _ = tracemalloc.get_traced_memory()
                cache = [
                    Aggregate(
                        payload(),
                        account_keys(uuid.uuid4()),
                        history,
                        SortableUniqueId.generate(),
                        projector.name,
                        projector.version,
                    )
                    for _ in range(count)
                ]
                gc.collect()
                after, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            rows.append({"payload": name, "history": history, "bytes": (after - before) / count})
            del cache
    return rows


async def command_latency(stores_names: list[str], commands: int) -> list[dict[str, Any]]:
    """p50 / p99 of `SekibanExecutor.command` per store (1,000-event account, snapshot
    every 100 events, so every load is snapshot + fewer than 100 events)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="sekiban-latency-") as directory:
        skipped: dict[str, str] = {}
        for engine in engines_for(stores_names, Path(directory), skipped):
            async with engine.sekiban_stores() as stores:
                serializer = Serializer(bench_domain())
                keys = await seed_sekiban(stores, serializer, 1_000, snapshot_at=1_000)
                executor = SekibanExecutor(
                    bench_domain(),
                    stores.events,
                    snapshot_store=stores.snapshots,
                    snapshot_config=SnapshotConfiguration(strategy="count", count_threshold=100),
                )
                count = commands if engine.name != "cosmos" else min(commands, 300)
                samples = []
                for _ in range(count + 20):
                    started = time.perf_counter()
                    await executor.command(
                        DepositMany(account_id=keys.aggregate_id, amount=1, count=1)
                    )
                    samples.append(time.perf_counter() - started)
                samples = sorted(samples[20:])  # the first ones warm the caches
                rows.append(
                    {
                        "store": engine.name,
                        "commands": count,
                        "p50_ms": statistics.median(samples) * 1000,
                        "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
                    }
                )
        for name, reason in skipped.items():
            print(f"latency: skipping {name}: {reason}", file=sys.stderr)
    return rows


def plot(results: ScaleResults, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    figure, ax = plt.subplots(figsize=(6.4, 4.4))
    for snapshot, label, style in ((False, "full replay", "-o"), (True, "from snapshot", "--s")):
        points = sorted((r["history"], r["ms"]) for r in results.loads if r["snapshot"] == snapshot)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
    _axes(ax, "events in the history", "load time (ms, median)", "Load time on SQLite (sekiban)")
    written.append(_save(figure, directory / "scale-load.png"))
    figure, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, style in (("account", "-o"), ("ledger", "--s")):
        points = sorted(
            (r["history"], r["bytes"] / 1024) for r in results.memory if r["payload"] == name
        )
        if points:
            ax.plot(*zip(*points, strict=True), style, label=name)
    _axes(ax, "events in the history", "KiB per cached aggregate", "Memory per cached aggregate")
    written.append(_save(figure, directory / "scale-memory.png"))
    figure, ax = plt.subplots(figsize=(6.4, 4.4))
    for key, label, style in (
        ("raw_bytes", "compression off", "-o"),
        ("compressed_bytes", "compression on (zlib)", "--s"),
    ):
        points = sorted((r["state_bytes"], r[key]) for r in results.sizes)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=label)
    _axes(ax, "state size (bytes of JSON)", "snapshot size (bytes)", "Snapshot size vs state size")
    written.append(_save(figure, directory / "scale-snapshot-size.png"))
    plt.close("all")
    return written


def _axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.35)
    ax.legend(frameon=False)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def markdown(env: dict[str, Any], results: ScaleResults) -> str:
    lines = ["# Scale curves and command latency", "", *environment_markdown(env), ""]
    lines += [
        "## Load time on SQLite (ms, median)",
        "",
        "| events | full replay | from snapshot |",
        "|--:|--:|--:|",
    ]
    for history in sorted({r["history"] for r in results.loads}):
        full, snap = (
            next(r["ms"] for r in results.loads if r["history"] == history and r["snapshot"] is s)
            for s in (False, True)
        )
        lines.append(f"| {history:,} | {full:,.3f} | {snap:,.3f} |")
    lines += [
        "",
        "## Memory per cached aggregate (KiB)",
        "",
        "| events | account | ledger |",
        "|--:|--:|--:|",
    ]
    for history in sorted({r["history"] for r in results.memory}):
        a, b = (
            next(
                r["bytes"] for r in results.memory if r["history"] == history and r["payload"] == p
            )
            for p in ("account", "ledger")
        )
        lines.append(f"| {history:,} | {a / 1024:,.2f} | {b / 1024:,.1f} |")
    lines += [
        "",
        "## Snapshot size vs state size (bytes)",
        "",
        "| payload | events | state JSON | snapshot raw | snapshot zlib |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in results.sizes:
        lines.append(
            f"| {r['payload']} | {r['history']:,} | {r['state_bytes']:,} | "
            f"{r['raw_bytes']:,} | {r['compressed_bytes']:,} |"
        )
    lines += [
        "",
        "## Command latency through SekibanExecutor (ms)",
        "",
        "| store | commands | p50 | p99 |",
        "|---|--:|--:|--:|",
    ]
    for r in results.latency:
        lines.append(
            f"| {r['store']} | {r['commands']:,} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> ScaleResults:
    results = ScaleResults()
    results.loads = await load_curve(args.histories, args.budget)
    results.memory = cached_memory(MEMORY_HISTORIES)
    for size in await measure_snapshot_sizes((*MEMORY_HISTORIES, 100000), budget_s=0.05):
        state = (
            ledger(size.history)
            if size.payload == "ledger"
            else ActiveAccount(
                owner="bench", balance=size.history - 1, transactions=size.history - 1
            )
        )
        results.sizes.append(asdict(size) | {"state_bytes": len(state.model_dump_json())})
    results.latency = await command_latency(args.stores.split(","), args.commands)
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--histories", default=",".join(map(str, HISTORIES)))
    p.add_argument("--budget", type=float, default=1.0, help="seconds per load case")
    p.add_argument("--stores", default="memory,sqlite,sqlite-full,postgres,cosmos")
    p.add_argument("--commands", type=int, default=1_000, help="commands per latency run")
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--images", type=Path, help="also write the plots here (e.g. docs/img)")
    args = p.parse_args(argv)
    args.histories = tuple(int(h) for h in args.histories.split(","))
    env = environment(" ".join(["python -m benchmarks.scale", *argv]))
    results = asyncio.run(run(args))
    env["load_average"]["after"] = load_average()
    args.output.mkdir(parents=True, exist_ok=True)
    text = markdown(env, results)
    (args.output / "scale.md").write_text(text + "\n")
    (args.output / "scale.json").write_text(
        json.dumps({"environment": env, **asdict(results)}, indent=2) + "\n"
    )
    for folder in (args.output, args.images):
        if folder is not None:
            plot(results, folder)
    print(text)


if __name__ == "__main__":
    main()
