"""How long SQLite work keeps the event loop from running other tasks.

    python -m benchmarks.loop_lag [--seconds 3] [--seed 20000] [--writers 4] [--json]

A probe task sleeps 1 ms in a loop and records how late it wakes: the loop lag, the
time some other callback held the loop. It runs beside three loads on one SQLite file
(WAL, the store's defaults) holding `--seed` events, through `SekibanExecutor`:

- writes: `--writers` tasks, each depositing into its own 20 accounts, half of them
  1 event per command and half 10 (snapshots every 100 events, so loads are snapshot
  plus delta), waiting `--think` ms between commands as requests arrive;
- writes+read_all: the writers and a task reading `read_all` from position 0 again and
  again (the store's large read, consumed at no cost);
- writes+queries: the writers and a task answering a multi-projection query from a
  fresh projection again and again (`Projections` catching up over `read_all` from 0,
  `Serializer.to_event` and a fold per event).

Printed per load: the lag's p50, p99 and max (ms), the commands and events written per
second and the events read per second. Then, alone on fresh files, the store-level
append rate (1 and 10 events per command, one task), to show the writers lost
nothing. The machine is shared: compare medians of alternated runs (`--repeat`).
Full runs write `benchmarks/results/loop_lag.{md,json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.domains import (
    SNAPSHOT_EVERY,
    AccountProjector,
    DepositMany,
    OpenAccount,
    bench_domain,
)
from benchmarks.engines import Stores
from benchmarks.environment import environment
from benchmarks.seeding import seed_sekiban
from sekiban import (
    Event,
    EventMetadata,
    EventPayload,
    MultiProjector,
    Query,
    SekibanExecutor,
    Serializer,
)
from sekiban.core.clock import utc_now
from sekiban.core.command import decide
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores.sqlite import SqliteEventStore

RESULTS = Path(__file__).parent / "results"
PROBE_SLEEP = 0.001
ACCOUNTS_PER_WRITER = 20


class EventCounter(MultiProjector[int]):
    """Counts every event: the cheapest fold, so the read dominates a catch-up."""

    def initial_state(self) -> int:
        return 0

    def project(self, state: int, event: Event[EventPayload]) -> int:
        return state + 1


class CountEvents(Query[int]):
    multi_projector = EventCounter

    def handle(self, state: int) -> int:
        return state


DOMAIN = bench_domain(EventCounter, CountEvents)
SERIALIZER = Serializer(DOMAIN)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(PROBE_SLEEP)
        lags.append(time.perf_counter() - started - PROBE_SLEEP)


def executor(store: SqliteEventStore) -> SekibanExecutor:
    return SekibanExecutor(
        DOMAIN,
        store,
        snapshot_store=store.snapshot_store(),
        snapshot_config=SnapshotConfiguration(strategy="count", count_threshold=SNAPSHOT_EVERY),
    )


async def open_accounts(sekiban: SekibanExecutor, count: int) -> list[uuid.UUID]:
    ids = []
    for _ in range(count):
        command = OpenAccount(owner="lag")
        await sekiban.command(command)
        ids.append(command.account_id)
    return ids


async def seed(store: SqliteEventStore, events: int) -> None:
    """`events` events in 10 accounts, committed 10 at a time."""
    stores = Stores(store, store.snapshot_store())
    for _ in range(10):
        await seed_sekiban(stores, SERIALIZER, events // 10, chunk=10)


SCENARIOS = ("writes", "writes+read_all", "writes+queries")


async def mixed(
    store: SqliteEventStore, scenario: str, seconds: float, writers: int, think: float
) -> dict[str, Any]:
    sekiban = executor(store)
    accounts = [await open_accounts(sekiban, ACCOUNTS_PER_WRITER) for _ in range(writers)]
    stop = asyncio.Event()
    lags: list[float] = []
    commands = [0] * writers
    events = [0] * writers
    read = [0]

    async def writer(i: int) -> None:
        per_command = 1 if i % 2 == 0 else 10
        n = 0
        while not stop.is_set():
            account = accounts[i][n % ACCOUNTS_PER_WRITER]
            await sekiban.command(DepositMany(account_id=account, amount=1, count=per_command))
            commands[i] += 1
            events[i] += per_command
            n += 1
            await asyncio.sleep(think)  # requests arrive, they are not all queued

    async def read_all() -> None:
        while not stop.is_set():
            async for batch in store.read_all():
                read[0] += len(batch)
            await asyncio.sleep(0)

    async def queries() -> None:
        while not stop.is_set():
            read[0] += await executor(store).query(CountEvents())  # a fresh projection
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(writer(i)) for i in range(writers)]
    tasks.append(asyncio.create_task(probe(lags, stop)))
    if scenario == "writes+read_all":
        tasks.append(asyncio.create_task(read_all()))
    elif scenario == "writes+queries":
        tasks.append(asyncio.create_task(queries()))
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return {
        "lag_p50_ms": percentile(lags, 0.50) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
        "lag_max_ms": max(lags) * 1000,
        "commands_per_s": sum(commands) / elapsed,
        "events_per_s": sum(events) / elapsed,
        "read_events_per_s": read[0] / elapsed,
    }


async def append_rate(path: Path, per_command: int, commands: int) -> float:
    """Store-level events appended per second, one task, 100 accounts round robin."""
    async with await SqliteEventStore.open(path) as store:
        serializer = SERIALIZER
        metadata = EventMetadata(correlation_id="rate")
        projector = DOMAIN.projector(AccountProjector)
        aggregates = []
        for _ in range(100):
            opening = OpenAccount(owner="rate")
            aggregate = projector.empty_aggregate(opening.partition_keys())
            opened = await decide(opening, aggregate, metadata, utc_now)
            await store.append([serializer.to_stored(e) for e in opened], 0)
            aggregates.append(projector.fold(aggregate, opened))
        started = time.perf_counter()
        for n in range(commands):
            aggregate = aggregates[n % 100]
            command = DepositMany(
                account_id=aggregate.partition_keys.aggregate_id, amount=1, count=per_command
            )
            new = await decide(command, aggregate, metadata, utc_now)
            await store.append([serializer.to_stored(e) for e in new], aggregate.version)
            aggregates[n % 100] = projector.fold(aggregate, new)
        return commands * per_command / (time.perf_counter() - started)


async def run_once(
    seconds: float, seed_events: int, writers: int, think: float, commands: int
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with await SqliteEventStore.open(Path(tmp, "mixed.db")) as store:
            await seed(store, seed_events)
            for scenario in SCENARIOS:
                result[scenario] = await mixed(store, scenario, seconds, writers, think)
        result["append_1_events_per_s"] = await append_rate(Path(tmp, "a1.db"), 1, commands)
        result["append_10_events_per_s"] = await append_rate(Path(tmp, "a10.db"), 10, commands // 5)
    return result


LOAD_FIGURES = (
    ("lag_p50_ms", "loop lag p50 (ms)", "{:.2f}"),
    ("lag_p99_ms", "loop lag p99 (ms)", "{:.2f}"),
    ("lag_max_ms", "loop lag max (ms)", "{:.1f}"),
    ("commands_per_s", "commands/s", "{:,.0f}"),
    ("events_per_s", "events written/s", "{:,.0f}"),
    ("read_events_per_s", "events read/s", "{:,.0f}"),
)
RATES = (
    ("append_1_events_per_s", "store append, 1 event/cmd: events/s"),
    ("append_10_events_per_s", "store append, 10 events/cmd: events/s"),
)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        scenario: {
            key: statistics.median(run[scenario][key] for run in runs) for key, _, _ in LOAD_FIGURES
        }
        for scenario in SCENARIOS
    }
    for key, _ in RATES:
        summary[key] = statistics.median(run[key] for run in runs)
    return summary


def markdown(summary: dict[str, Any], runs: int, command: str) -> str:
    lines = [f"Median of {runs} runs of `{command}`.", ""]
    lines += ["| figure | " + " | ".join(SCENARIOS) + " |", "|---|" + "--:|" * len(SCENARIOS)]
    for key, label, fmt in LOAD_FIGURES:
        values = " | ".join(fmt.format(summary[s][key]) for s in SCENARIOS)
        lines.append(f"| {label} | {values} |")
    lines += ["", "| alone on a fresh file | events/s |", "|---|--:|"]
    lines += [f"| {label} | {summary[key]:,.0f} |" for key, label in RATES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loop_lag", description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load")
    parser.add_argument("--seed", type=int, default=20_000, help="events written before")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer tasks")
    parser.add_argument(
        "--think", type=float, default=5.0, help="ms each writer waits between commands"
    )
    parser.add_argument("--commands", type=int, default=5_000, help="for the append rate")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are printed")
    parser.add_argument(
        "--quick", action="store_true", help="1 s, 10,000 events, results not saved"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.seed, args.commands, args.repeat = 1.0, 10_000, 1_000, 1
    runs = [
        asyncio.run(
            run_once(args.seconds, args.seed, args.writers, args.think / 1000, args.commands)
        )
        for _ in range(args.repeat)
    ]
    summary = summarize(runs)
    command = " ".join(["python -m benchmarks.loop_lag", *argv])
    if args.json:
        print(json.dumps({"summary": summary, "runs": runs}, indent=2))
    else:
        print(markdown(summary, len(runs), command))
    if not args.quick:
        document = {"environment": environment(command), "summary": summary}
        (RESULTS / "loop_lag.json").write_text(json.dumps({**document, "runs": runs}, indent=2))
        (RESULTS / "loop_lag.md").write_text(markdown(summary, len(runs), command) + "\n")


if __name__ == "__main__":
    main()
