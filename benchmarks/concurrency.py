"""`python -m benchmarks.concurrency`: append throughput with 1, 8 and 64 concurrent
writers, each on its own aggregates, against one sequential writer.

Every writer is a task on one event loop sharing one store (as the tasks of a web
server share it), doing what `benchmarks.throughput`'s store level does per command:
`decide` one deposit, `append` it, fold it. On SQLite the appends of one loop turn share
a transaction and its fsync (group commit, `sekiban.stores.sqlite.group_commit`, on by
default); the sequential writer is measured with group commit on and off. On PostgreSQL
each append is its own statement on a pooled connection (10 by default); the server
flushes concurrent commits' WAL together.

Each (store, mode, writers) cell runs `--repeat` times on a fresh database, interleaved
with the others, after an untimed warm-up; the median is reported. Results go to
`benchmarks/results/concurrency.{md,json}` unless --no-save.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.engines import Stores, _postgres_missing
from benchmarks.environment import environment, environment_markdown, load_average
from benchmarks.throughput import SekibanStoreLevel

WRITERS = (1, 8, 64)
RESULTS = Path("benchmarks/results")


@dataclass
class Cell:
    store: str  # "sqlite" (NORMAL), "sqlite-full" or "postgres"
    group_commit: bool | None  # SQLite: on or off; PostgreSQL: None
    writers: int
    commands: int
    seconds: list[float] = field(default_factory=list)

    @property
    def commands_per_second(self) -> float:
        return self.commands / statistics.median(self.seconds)

    @property
    def label(self) -> str:
        if self.group_commit is None:
            return self.store
        return f"{self.store}, group commit {'on' if self.group_commit else 'off'}"


@asynccontextmanager
async def open_stores(store: str, group_commit: bool | None, directory: Path) -> AsyncIterator[Any]:
    if store.startswith("sqlite"):
        from sekiban.stores.sqlite import SqliteEventStore

        sqlite = await SqliteEventStore.open(
            directory / f"{uuid.uuid4().hex}.db",
            synchronous="FULL" if store == "sqlite-full" else "NORMAL",
            group_commit=group_commit is not False,
        )
        try:
            yield Stores(sqlite, sqlite.snapshot_store())
        finally:
            await sqlite.close()
        return
    from benchmarks.engines import PostgresEngine

    engine = PostgresEngine(os.environ["SEKIBAN_POSTGRES_DSN"])
    async with engine.sekiban_stores() as stores:
        yield stores


async def run_cell(cell: Cell, directory: Path) -> float:
    # Every cell starts with no dirty pages in the OS cache: an fsync on ext4 (ordered
    # data) also writes out other files' dirty data, so a FULL run right after NORMAL
    # runs would pay for their writes.
    os.sync()
    async with open_stores(cell.store, cell.group_commit, directory) as stores:
        subject = SekibanStoreLevel(stores)
        accounts = [await subject.open_account() for _ in range(cell.writers)]

        async def writer(account: Any, count: int) -> None:
            for _ in range(count):
                await subject.deposit(account, 1)

        await asyncio.gather(*(writer(a, 5) for a in accounts))  # warm-up
        per_writer = cell.commands // cell.writers
        started = time.perf_counter()
        await asyncio.gather(*(writer(a, per_writer) for a in accounts))
        return time.perf_counter() - started


def plan(stores: list[str], commands: int, writers: tuple[int, ...]) -> list[Cell]:
    cells = []
    for store in stores:
        modes: list[bool | None] = [None] if store == "postgres" else [True, False]
        for mode in modes:
            for n in writers:
                if mode is False and n > 1 and store == "sqlite-full":
                    continue  # without grouping, concurrent writers only take turns
                cells.append(Cell(store, mode, n, commands - commands % n))
    return cells


async def run(cells: list[Cell], repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sekiban-concurrency-") as directory:
        for round_ in range(repeat):
            for cell in cells:
                print(
                    f"round {round_ + 1}/{repeat}: {cell.label}, {cell.writers} writers",
                    file=sys.stderr,
                )
                cell.seconds.append(await run_cell(cell, Path(directory)))


def speedups(cells: list[Cell]) -> dict[str, float]:
    """Rate with n writers / the one sequential writer's rate, per store and writer
    count. On SQLite the sequential writer is the faster of its two runs (group commit
    on and off): a lone append is written at once either way, so any gap between them
    is the machine's noise, and the faster one makes the smaller claim."""
    out = {}
    for cell in cells:
        if cell.group_commit is False:
            continue
        alone = [c for c in cells if c.store == cell.store and c.writers == 1]
        if alone:
            base = max(c.commands_per_second for c in alone)
            out[f"{cell.store}/{cell.writers}"] = round(cell.commands_per_second / base, 2)
    return out


def markdown(env: dict[str, Any], cells: list[Cell], repeat: int) -> str:
    lines = [
        "# Concurrent writers and group commit",
        "",
        *environment_markdown(env),
        "",
        f"Median of {repeat} runs per cell, each on a fresh database after a warm-up; "
        "commands/s of 1-event appends at the store level (decide, append, fold), each "
        "writer on its own aggregate, all tasks on one event loop sharing one store. "
        "Speedup = rate / the one sequential writer's rate (SQLite: the faster of its "
        "runs with group commit on and off). Group commit is on by default; off is "
        "shown for reference.",
        "",
        "| store | writers | commands/s | speedup |",
        "|---|--:|--:|--:|",
    ]
    ups = speedups(cells)
    for cell in cells:
        up = ups.get(f"{cell.store}/{cell.writers}") if cell.group_commit is not False else None
        shown = f"{up:.2f}x" if up is not None else ""
        lines.append(
            f"| {cell.label} | {cell.writers} | {cell.commands_per_second:,.0f} | {shown} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.concurrency", description=__doc__)
    p.add_argument("--stores", default="postgres,sqlite,sqlite-full")
    p.add_argument("--writers", default=",".join(map(str, WRITERS)))
    p.add_argument("--commands", type=int, default=3_000, help="commands per run")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    stores = [s for s in args.stores.split(",") if s]
    if "postgres" in stores and _postgres_missing():
        print(f"skipping postgres: {_postgres_missing()}", file=sys.stderr)
        stores.remove("postgres")
    env = environment(" ".join(["python -m benchmarks.concurrency", *argv]))
    cells = plan(stores, args.commands, tuple(int(w) for w in args.writers.split(",")))
    asyncio.run(run(cells, args.repeat))
    env["load_average"]["after"] = load_average()
    text = markdown(env, cells, args.repeat)
    print(text)
    if args.save:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "concurrency.md").write_text(text + "\n")
        document = {
            "environment": env,
            "repeat": args.repeat,
            "cells": [
                asdict(c) | {"commands_per_second": round(c.commands_per_second)} for c in cells
            ],
            "speedups": speedups(cells),
        }
        (args.output / "concurrency.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
