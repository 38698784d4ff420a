"""A process that runs real commands against a real store until it is killed.

`tests/integration/test_crash_points.py` starts it as

    python -m tests.integration.crash_driver STORE SCENARIO [options]

where STORE is `sqlite:<file>` or `postgres:<schema>` (the DSN comes from
SEKIBAN_POSTGRES_DSN), and kills it with SIGKILL. The stores are the real ones; the
subclasses below only print what is about to happen and, where asked, inject a failure
or widen a window. Nothing here belongs in `src/`.

Every step is announced on stdout, one flushed line each, so whoever killed the process
can tell what it was doing when it died:

    READY                                   stores open, commands about to start
    COMMAND <correlation> <events> <keys>   a command is about to run
    APPEND <correlation> <after version>    the event store append has been called
    APPENDED <correlation>                  the append returned (the events are committed)
    SNAPSHOT <keys> <version>               a snapshot save has been called
    SNAPSHOT-SAVED <keys> <version> <bool>  the save returned
    ACK <correlation> <version>             the command returned to its caller
    KILL-SELF <keys> <version>              about to SIGKILL itself instead of saving
    KILL-IN-APPEND <correlation> <rows>     about to SIGKILL itself mid-append (rows
                                            inserted so far in its transaction, or ?)
    DONE                                    the bounded loop ended without a kill

Scenarios:
- `snapshot-kill --kill-at-save N`: bank accounts (open, four deposits, a withdrawal, a
  close that appends two events), a snapshot every 2 events; the N-th snapshot save
  SIGKILLs the process after the command's events were appended and before anything of
  the snapshot is written.
- `ledger --aggregate ID ...`: `GrowLedger` commands on the given aggregates, whose
  payload is megabytes, snapshotted after every command, so most of the time is spent
  writing snapshots. With `--hold-ms` (SQLite) each snapshot is written inside a write
  transaction that is held open before its commit: a kill then leaves an uncommitted
  snapshot in the WAL file.
- `bursts --aggregate ID ...`: `RecordBurst` commands that append 50 events at once,
  alternating with bank accounts that are opened, credited and closed (2 events). With
  `--stall-us` (SQLite) the append sleeps between SQL statements inside its write
  transaction, so a kill lands with part of the batch inserted. With
  `--kill-in-append N` the N-th append of several events kills the process itself: on
  SQLite from inside the write transaction once half its rows are inserted, on
  PostgreSQL from a timer 5 ms after the append is called (while the server runs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from examples.bank import (
    AccountProjector,
    CloseAccount,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
    bank_domain,
)
from sekiban import (
    AggregatePayload,
    AggregateProjector,
    Command,
    CommandContext,
    DomainTypes,
    Event,
    EventMetadata,
    EventPayload,
    PartitionKeys,
    SekibanExecutor,
)
from sekiban.core.serialization import StoredEvent
from sekiban.snapshot import AggregateSnapshot, SnapshotConfiguration
from sekiban.stores.postgres import PostgresEventStore, PostgresSnapshotStore
from sekiban.stores.sqlite import SqliteEventStore, SqliteSnapshotStore

BURST_SIZE = 50
LEDGER_BLOCK_CHARS = 65_536
LEDGER_BLOCKS_KEPT = 40
"""A ledger payload holds up to 40 blocks of 64 KiB: about 2.6 MB of snapshot JSON."""

# --- a domain with big aggregates and many-event commands --------------------------


class LedgerGrown(EventPayload):
    seed: int
    size: int = Field(gt=0, le=1 << 20)


class Ledger(AggregatePayload):
    blocks: tuple[str, ...] = ()
    grown: int = 0


class LedgerProjector(AggregateProjector):
    """Each event adds a block of pseudo-random hex derived from its seed (pure)."""

    name = "crash-ledger"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        if not isinstance(event.payload, LedgerGrown):
            return payload
        ledger = payload if isinstance(payload, Ledger) else Ledger()
        block = random.Random(event.payload.seed).randbytes(event.payload.size // 2).hex()
        blocks = (*ledger.blocks[-(LEDGER_BLOCKS_KEPT - 1) :], block)
        return ledger.evolve(blocks=blocks, grown=ledger.grown + 1)


class GrowLedger(Command):
    projector = LedgerProjector

    ledger_id: uuid.UUID
    seed: int
    size: int = LEDGER_BLOCK_CHARS

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.ledger_id, LedgerProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return LedgerGrown(seed=self.seed, size=self.size)


class BurstRecorded(EventPayload):
    index: int = Field(ge=0)
    of: int = Field(ge=1)


class Burst(AggregatePayload):
    """What the bursts folded so far; `torn` counts events out of burst order."""

    events: int = 0
    bursts: int = 0
    next_index: int = 0
    torn: int = 0
    digest: int = 0


class BurstProjector(AggregateProjector):
    name = "crash-burst"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        recorded = event.payload
        if not isinstance(recorded, BurstRecorded):
            return payload
        burst = payload if isinstance(payload, Burst) else Burst()
        last = recorded.index == recorded.of - 1
        token = f"{event.version}:{recorded.index}:{event.metadata.correlation_id}"
        return burst.evolve(
            events=burst.events + 1,
            bursts=burst.bursts + last,
            next_index=0 if last else recorded.index + 1,
            torn=burst.torn + (recorded.index != burst.next_index),
            digest=zlib.crc32(token.encode(), burst.digest),
        )


class RecordBurst(Command):
    """Appends `count` events in one command (one atomic append)."""

    projector = BurstProjector

    burst_id: uuid.UUID
    count: int = Field(default=BURST_SIZE, ge=1, le=1000)

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.burst_id, BurstProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        return [BurstRecorded(index=i, of=self.count) for i in range(self.count)]


PROJECTORS: dict[str, type[AggregateProjector]] = {
    AccountProjector.name: AccountProjector,
    LedgerProjector.name: LedgerProjector,
    BurstProjector.name: BurstProjector,
}
"""Projector of each stream, by the group of its partition keys."""


def crash_domain() -> DomainTypes:
    """The bank domain plus the ledger and burst aggregates used by the crash tests."""
    return bank_domain().register(
        LedgerGrown,
        Ledger,
        LedgerProjector,
        GrowLedger,
        BurstRecorded,
        Burst,
        BurstProjector,
        RecordBurst,
    )


# --- markers and the store wrappers -------------------------------------------------


def mark(*words: object) -> None:
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


class MarkingEventStore:
    """Announces each append. The `kill_in_append`-th append of several events kills
    the process while it is in flight (how depends on the store: `arm_kill`)."""

    kill_in_append: int | None = None
    multi_event_appends = 0

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        correlation = events[0].correlation_id
        mark("APPEND", correlation, expected_version)
        if len(events) > 1:
            self.multi_event_appends += 1
            if self.multi_event_appends == self.kill_in_append:
                await self.arm_kill(correlation, len(events) // 2)
        await self.write(events, expected_version, command_id)
        mark("APPENDED", correlation)

    async def write(
        self, events: Sequence[StoredEvent], expected_version: int, command_id: str | None
    ) -> None:
        await super().append(events, expected_version, command_id=command_id)  # type: ignore[misc]

    async def arm_kill(self, correlation: str, rows: int) -> None:
        raise NotImplementedError


def kill_self(*words: object) -> None:
    mark("KILL-IN-APPEND", *words)
    os.kill(os.getpid(), signal.SIGKILL)


class MarkingSnapshotStore:
    """Announces each save; the `kill_at_save`-th save SIGKILLs the process instead."""

    kill_at_save: int | None = None
    saves = 0

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        self.saves += 1
        where = f"{snapshot.partition_keys} {snapshot.version}"
        if self.saves == self.kill_at_save:
            mark("KILL-SELF", where)
            os.kill(os.getpid(), signal.SIGKILL)
        mark("SNAPSHOT", where)
        saved = await self.write(snapshot)
        mark("SNAPSHOT-SAVED", where, saved)
        return saved

    async def write(self, snapshot: AggregateSnapshot) -> bool:
        saved: bool = await super().save(snapshot)  # type: ignore[misc]
        return saved


class DriverSqliteEventStore(MarkingEventStore, SqliteEventStore):
    """`stall` (seconds) is slept every few SQL VM instructions while an append runs,
    that is inside its INSERT statement; an armed kill fires from there, mid-statement."""

    stall = 0.0
    appending = False
    kill_armed: str | None = None
    kill_after_rows = 0
    callbacks = 0

    async def write(
        self, events: Sequence[StoredEvent], expected_version: int, command_id: str | None
    ) -> None:
        self.appending = True
        try:
            await super().write(events, expected_version, command_id)
        finally:
            self.appending = False

    async def arm_kill(self, correlation: str, rows: int) -> None:
        # An append is one INSERT of one commit row, whatever its number of events, and
        # nothing of it is visible before the statement ends: the 2nd handler call
        # (about 20 VM instructions in) is inside it.
        self.callbacks = 0
        self.kill_armed, self.kill_after_rows = correlation, 2

    def on_progress(self) -> int:
        # SQLite's progress handler, every 10 VM instructions, mid-statement.
        if not self.appending:
            return 0
        if self.kill_armed:
            self.callbacks += 1
            if self.callbacks >= self.kill_after_rows:
                kill_self(self.kill_armed, "?")
        if self.stall:
            time.sleep(self.stall)
        return 0


class DriverSqliteSnapshotStore(MarkingSnapshotStore, SqliteSnapshotStore):
    """With `hold` (seconds), the real upsert runs inside a write transaction that is
    held open that long before COMMIT; a snapshot this big spills into the WAL file
    before it commits."""

    hold = 0.0

    async def write(self, snapshot: AggregateSnapshot) -> bool:
        if not self.hold:
            return await super().write(snapshot)
        db = self._db
        await db.run(_execute, "BEGIN IMMEDIATE")
        try:
            saved = await super().write(snapshot)
            await db.run(_sleep, self.hold)
        except BaseException:
            await db.run(_execute, "ROLLBACK")
            raise
        await db.run(_execute, "COMMIT")
        return saved


class DriverPostgresEventStore(MarkingEventStore, PostgresEventStore):
    async def arm_kill(self, correlation: str, rows: int) -> None:
        # The kill lands while the server runs the statement (the test slows it down
        # with a trigger); the server notices the dead client within the session's
        # client_connection_check_interval and aborts the statement, or finishes it first.
        threading.Timer(0.005, kill_self, (correlation, "?")).start()


class DriverPostgresSnapshotStore(MarkingSnapshotStore, PostgresSnapshotStore):
    pass


def _execute(connection: sqlite3.Connection, sql: str) -> None:
    connection.execute(sql)


def _sleep(connection: sqlite3.Connection, seconds: float) -> None:
    time.sleep(seconds)


def application_name(schema: str) -> str:
    """The PostgreSQL application_name of a driver's sessions, so the test can wait
    until the server has finished with a killed driver's connections."""
    return f"crash_driver_{schema}"


async def open_stores(
    spec: str, args: argparse.Namespace
) -> tuple[MarkingEventStore, MarkingSnapshotStore]:
    kind, _, where = spec.partition(":")
    events: Any
    snapshots: Any
    if kind == "sqlite":
        events = await DriverSqliteEventStore.open(where)
        snapshots = DriverSqliteSnapshotStore(events._db)
        snapshots.hold = args.hold_ms / 1000
        events.stall = args.stall_us / 1_000_000
        await events._db.run(
            lambda connection: connection.set_progress_handler(events.on_progress, 10)
        )
    elif kind == "postgres":
        dsn = os.environ["SEKIBAN_POSTGRES_DSN"]
        separator = "&" if "?" in dsn else "?"
        # Without a check interval a backend whose client died still runs its statement
        # to the end and commits it; with one it may also abort it half-way. Both must
        # leave whole commands.
        dsn = (
            f"{dsn}{separator}application_name={application_name(where)}"
            "&client_connection_check_interval=10"
        )
        events = await DriverPostgresEventStore.open(dsn, schema=where, max_size=2)
        snapshots = DriverPostgresSnapshotStore(events._pool, schema=where)
    else:
        raise SystemExit(f"unknown store {spec!r}")
    snapshots.kill_at_save = args.kill_at_save
    events.kill_in_append = args.kill_in_append
    return events, snapshots


# --- scenarios ----------------------------------------------------------------------


class Driver:
    def __init__(self, executor: SekibanExecutor) -> None:
        self.executor = executor

    async def run(self, command: Command, events: int) -> None:
        correlation = uuid.uuid4().hex
        mark("COMMAND", correlation, events, command.partition_keys())
        metadata = EventMetadata(
            causation_id=correlation, correlation_id=correlation, executed_user="crash-driver"
        )
        response = await self.executor.command(command, metadata)
        assert len(response.events) == events, (command, response)
        mark("ACK", correlation, response.version)


async def account_lifecycle(driver: Driver) -> None:
    account = uuid.uuid4()
    await driver.run(OpenAccount(owner="crash", account_id=account), 1)
    for amount in (100, 20, 30, 40):
        await driver.run(DepositMoney(account_id=account, amount=amount), 1)
    await driver.run(WithdrawMoney(account_id=account, amount=90), 1)
    # The balance is non-zero, so the close appends MoneyWithdrawn + AccountClosed.
    await driver.run(CloseAccount(account_id=account, reason="crash test"), 2)


async def snapshot_kill(driver: Driver, args: argparse.Namespace) -> None:
    for _ in range(args.max_commands // 7):
        await account_lifecycle(driver)


async def ledger(driver: Driver, args: argparse.Namespace) -> None:
    ids = [uuid.UUID(a) for a in args.aggregate]
    for n in range(args.max_commands):
        seed = random.getrandbits(63)
        await driver.run(GrowLedger(ledger_id=ids[n % len(ids)], seed=seed), 1)


async def bursts(driver: Driver, args: argparse.Namespace) -> None:
    ids = [uuid.UUID(a) for a in args.aggregate]
    for n in range(args.max_commands // 4):
        await driver.run(RecordBurst(burst_id=ids[n % len(ids)]), BURST_SIZE)
        account = uuid.uuid4()
        await driver.run(OpenAccount(owner="burst", account_id=account), 1)
        await driver.run(DepositMoney(account_id=account, amount=5), 1)
        await driver.run(CloseAccount(account_id=account), 2)


SCENARIOS = {
    "snapshot-kill": (snapshot_kill, SnapshotConfiguration(strategy="count", count_threshold=2)),
    "ledger": (
        ledger,
        SnapshotConfiguration(strategy="count", count_threshold=1, compress_above_bytes=None),
    ),
    "bursts": (
        bursts,
        SnapshotConfiguration(
            strategy="count",
            count_threshold=3,
            overrides={
                BurstProjector.name: SnapshotConfiguration(strategy="count", count_threshold=100)
            },
        ),
    ),
}


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.crash_driver")
    parser.add_argument("store", help="sqlite:<file> or postgres:<schema>")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--aggregate", action="append", default=[], help="aggregate id")
    parser.add_argument("--kill-at-save", type=int, default=None)
    parser.add_argument("--kill-in-append", type=int, default=None)
    parser.add_argument("--hold-ms", type=float, default=0.0)
    parser.add_argument("--stall-us", type=float, default=0.0)
    parser.add_argument("--max-commands", type=int, default=2000)
    args = parser.parse_args(argv)
    scenario, config = SCENARIOS[args.scenario]
    events, snapshots = await open_stores(args.store, args)
    executor = SekibanExecutor(
        crash_domain(),
        events,  # type: ignore[arg-type]
        snapshot_store=snapshots,  # type: ignore[arg-type]
        snapshot_config=config,
    )
    mark("READY")
    await scenario(Driver(executor), args)
    mark("DONE")
    await events.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    asyncio.run(main())
