"""Event store throughput: sekiban against the `eventsourcing` package, same engine, same run.

Workloads, each on a bank account (an "opened" event, then deposits of one int):
appends of 1 and of 10 events per command, spread over many aggregates or into one
long stream, and the replay of a 10,000-event stream into an aggregate.

Two levels are compared:
- store: sekiban `decide`s the command's event envelopes, appends them as a
  `Serializer.to_stored` batch with `EventStore.append` and `projector.fold`s them into
  an aggregate held in memory (the repository's work without load and snapshot); replay is
  `EventReplayOptimizer.load` (read_stream, `Serializer.to_event`, fold). eventsourcing
  triggers the events on an aggregate held in memory and `Application.save`s it; replay
  is `repository.get`.
- executor: `SekibanExecutor.command` end to end (load, decide, append, snapshot) against
  an eventsourcing application command (`repository.get`, trigger, `save`). Both snapshot
  every 100 events during appends; neither has snapshots during the replay workload.

Every repetition uses a fresh database (a new SQLite file or PostgreSQL schema), runs a
warm-up that is not timed, then times the workload; the median is reported. "sqlite"
runs both frameworks with WAL and synchronous=NORMAL (sekiban's setting), "sqlite-full"
with WAL and synchronous=FULL (eventsourcing's default); the values are read back from
each connection and recorded.
"""

from __future__ import annotations

import gc
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.domains import (
    SNAPSHOT_EVERY,
    Account,
    AccountProjector,
    Bank,
    DepositMany,
    OpenAccount,
    account_keys,
    bench_domain,
)
from benchmarks.engines import Engine, Stores
from benchmarks.progress import Progress
from benchmarks.seeding import FILL_CHUNK
from sekiban import (
    Aggregate,
    AggregatePayload,
    Command,
    EventMetadata,
    PartitionKeys,
    SekibanExecutor,
    Serializer,
)
from sekiban.core.clock import utc_now
from sekiban.core.command import decide
from sekiban.loading import EventReplayOptimizer
from sekiban.snapshot import SnapshotConfiguration

DOMAIN = bench_domain()
LEVELS = ("store", "executor")
FRAMEWORKS = ("sekiban", "eventsourcing")


# --- what is measured: one subject per framework and level ------------------------


class Subject(Protocol):
    async def open_account(self) -> Any: ...
    async def deposit(self, account: Any, count: int) -> None: ...
    async def replay(self, account: Any) -> int: ...


class SekibanStoreLevel:
    """What the repository does below the executor: `decide` the envelopes, append them as a
    `Serializer.to_stored` batch, fold them into the aggregate held in memory. Replay is
    `EventReplayOptimizer.load` (read_stream, `Serializer.to_event`, fold)."""

    def __init__(self, stores: Stores) -> None:
        self.store = stores.events
        self.serializer = Serializer(DOMAIN)
        self.projector = DOMAIN.projector(AccountProjector)
        self.optimizer = EventReplayOptimizer(self.store, self.serializer)
        self.metadata = EventMetadata(correlation_id=str(uuid.uuid4()))
        self.aggregates: dict[PartitionKeys, Aggregate[AggregatePayload]] = {}

    async def open_account(self) -> PartitionKeys:
        command = OpenAccount(owner="bench")
        keys = command.partition_keys()
        self.aggregates[keys] = self.projector.empty_aggregate(keys)
        await self._commit(keys, command)
        return keys

    async def deposit(self, account: PartitionKeys, count: int) -> None:
        command = DepositMany(account_id=account.aggregate_id, amount=1, count=count)
        await self._commit(account, command)

    async def _commit(self, keys: PartitionKeys, command: Command) -> None:
        aggregate = self.aggregates[keys]
        events = await decide(command, aggregate, self.metadata, utc_now)
        await self.store.append([self.serializer.to_stored(e) for e in events], aggregate.version)
        self.aggregates[keys] = self.projector.fold(aggregate, events)

    async def replay(self, account: PartitionKeys) -> int:
        return (await self.optimizer.load(self.projector, account)).aggregate.version


class SekibanExecutorLevel:
    """`SekibanExecutor.command` / `load_aggregate`, end to end."""

    def __init__(self, stores: Stores, snapshots: bool) -> None:
        config = SnapshotConfiguration(strategy="count", count_threshold=SNAPSHOT_EVERY)
        self.executor = SekibanExecutor(
            DOMAIN,
            stores.events,
            snapshot_store=stores.snapshots if snapshots else None,
            snapshot_config=config,
        )

    async def open_account(self) -> uuid.UUID:
        command = OpenAccount(owner="bench")
        await self.executor.command(command)
        return command.account_id

    async def deposit(self, account: uuid.UUID, count: int) -> None:
        await self.executor.command(DepositMany(account_id=account, amount=1, count=count))

    async def replay(self, account: uuid.UUID) -> int:
        return (await self.executor.load_aggregate(AccountProjector, account_keys(account))).version


class EventsourcingLevel:
    """`Application.save` of aggregates held in memory (store level) or an application
    command that gets the aggregate from the repository first (executor level)."""

    def __init__(self, app: Bank, *, cached: bool) -> None:
        self.app = app
        self.accounts: dict[uuid.UUID, Account] | None = {} if cached else None

    async def open_account(self) -> uuid.UUID:
        account = Account("bench")
        self.app.save(account)
        if self.accounts is not None:
            self.accounts[account.id] = account
        return account.id

    async def deposit(self, account_id: uuid.UUID, count: int) -> None:
        if self.accounts is not None:
            account = self.accounts[account_id]
        else:
            account = self.app.repository.get(account_id)
        for _ in range(count):
            account.deposit(1)
        self.app.save(account)

    async def replay(self, account_id: uuid.UUID) -> int:
        return self.app.repository.get(account_id).version


@asynccontextmanager
async def subject(
    engine: Engine, framework: str, level: str, snapshots: bool
) -> AsyncIterator[Subject]:
    if framework == "sekiban":
        async with engine.sekiban_stores() as stores:
            yield (
                SekibanStoreLevel(stores)
                if level == "store"
                else SekibanExecutorLevel(stores, snapshots)
            )
    else:
        async with engine.eventsourcing_app(snapshots and level == "executor") as app:
            yield EventsourcingLevel(app, cached=level == "store")


# --- workloads and timing ---------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    events_per_command: int = 1
    accounts: int = 1
    commands: int = 0  # timed commands, round robin over the accounts; 0: replay
    replay_events: int = 0

    @property
    def is_replay(self) -> bool:
        return self.replay_events > 0

    @property
    def events(self) -> int:
        return self.replay_events or self.commands * self.events_per_command


def workloads(events: int, accounts: int, replay_events: int) -> list[Workload]:
    """Appends of `events` events (1 and 10 per command, over `accounts` aggregates and
    into one stream), then, unless `replay_events` is 0, the replay of a stream."""
    appends = [
        Workload(append_name(k, n), k, n, events // k) for n in (accounts, 1) for k in (1, 10)
    ]
    if not replay_events:
        return appends
    return [*appends, Workload(replay_name(replay_events), replay_events=replay_events)]


def append_name(events_per_command: int, accounts: int) -> str:
    streams = f"{accounts} aggregates" if accounts > 1 else "one stream"
    return f"append {events_per_command}/cmd, {streams}"


def replay_name(events: int) -> str:
    return f"replay {events:,}-event stream"


async def run_once(engine: Engine, framework: str, level: str, workload: Workload) -> float:
    """Seconds the timed part of `workload` took, on a fresh database, after a warm-up."""
    async with subject(engine, framework, level, snapshots=not workload.is_replay) as s:
        if workload.is_replay:
            account = await s.open_account()
            for start in range(1, workload.replay_events, FILL_CHUNK):
                await s.deposit(account, min(FILL_CHUNK, workload.replay_events - start))

            async def timed() -> None:
                version = await s.replay(account)
                assert version == workload.replay_events, version

            await timed()  # warm-up
        else:
            accounts = [await s.open_account() for _ in range(workload.accounts)]
            k = workload.events_per_command

            async def commands(n: int) -> None:
                for i in range(n):
                    await s.deposit(accounts[i % len(accounts)], k)

            await commands(max(1, workload.commands // 10))  # warm-up

            async def timed() -> None:
                await commands(workload.commands)

        gc.collect()
        started = time.perf_counter()
        await timed()
        return time.perf_counter() - started


@dataclass
class Result:
    engine: str
    workload: str
    level: str
    framework: str
    events: int
    seconds: list[float] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / statistics.median(self.seconds)


async def run_throughput(
    engines: list[Engine],
    plan: list[Workload],
    repeat: int,
    progress: Progress,
    levels: tuple[str, ...] = LEVELS,
) -> list[Result]:
    """Every (engine, workload, level, framework) cell, `repeat` times each."""
    engines = [e for e in engines if e.eventsourcing]
    results = []
    progress.begin("throughput", len(engines) * len(plan) * len(levels) * 2 * repeat)
    for engine in engines:
        for workload in plan:
            cells = [
                Result(engine.name, workload.name, level, framework, workload.events)
                for level in levels
                for framework in FRAMEWORKS
            ]
            # Repetitions interleave the subjects so drift hits all of them alike.
            for _ in range(repeat):
                for cell in cells:
                    progress.step(f"{engine.name}: {workload.name}, {cell.level}, {cell.framework}")
                    cell.seconds.append(
                        await run_once(engine, cell.framework, cell.level, workload)
                    )
            results.extend(cells)
    return results


def ratios(results: list[Result]) -> dict[tuple[str, str, str], float]:
    """sekiban / eventsourcing throughput per (engine, workload, level)."""
    by_key = {(r.engine, r.workload, r.level, r.framework): r.events_per_second for r in results}
    return {
        key[:3]: by_key[key] / by_key[(*key[:3], "eventsourcing")]
        for key in by_key
        if key[3] == "sekiban"
    }
