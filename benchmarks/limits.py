"""The raw-driver limit: sqlite3 and asyncpg writing and reading sekiban's own rows.

Each sekiban figure is also reported as a fraction of what the bare driver does with
the same rows at the same durability setting ("of limit"). The limit:

- append: the rows a sekiban append writes (SQLite: one `commits` row holding the
  command's events as a JSON array; PostgreSQL: one `events` row per event), built
  before the clock starts, written by a plain INSERT per command in its own
  transaction (autocommit: one commit, and at `synchronous=FULL` one fsync, each),
  round robin over the same number of aggregates as the sekiban workload. No version
  check, no command id, no Python above the driver: nothing a framework could skip.
  SQLite's WAL is checkpointed every `CHECKPOINT_EVERY` commits outside the timed
  statements, as sekiban's store does off the event loop.
- replay: the stream's rows fetched in version order in one statement (SQLite: and
  each commit's JSON array parsed, the least a reader must do to hold the events).

Tables are made by the sekiban store itself, so indexes and page layout are the same.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from benchmarks.domains import account_keys, bench_domain
from benchmarks.engines import Engine, PostgresEngine, SqliteEngine
from benchmarks.seeding import FILL_CHUNK, commit_sizes
from sekiban import Event, EventMetadata, Serializer, SortableUniqueId, StoredEvent
from sekiban.core.events import new_event_id
from sekiban.stores.sqlite.appending import encode_events
from sekiban.stores.sqlite.database import CHECKPOINT_EVERY

SERIALIZER = Serializer(bench_domain())


@dataclass
class Limit:
    """The driver's rate for one workload on one engine (`seconds`: every repetition)."""

    engine: str
    workload: str  # "append_1", "append_10" or "replay"
    events: int
    durability: str
    seconds: list[float] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / statistics.median(self.seconds)


def durability(engine: Engine) -> str:
    """The setting both frameworks and the driver ran at, as the output states it."""
    if isinstance(engine, SqliteEngine):
        return f"WAL, synchronous={engine.synchronous}"
    if isinstance(engine, PostgresEngine):
        return (
            f"synchronous_commit={engine.settings.get('synchronous_commit', '?')}, "
            f"fsync={engine.settings.get('fsync', '?')}"
        )
    return "none (process memory)"


def stored_commits(commands: int, per_command: int, accounts: int) -> list[list[StoredEvent]]:
    """`commands` commits of deposits, round robin over `accounts` new streams, as sekiban
    stores them (first commit of each stream at version 1)."""
    from benchmarks.domains import MoneyDeposited

    streams = [account_keys(uuid.uuid4()) for _ in range(accounts)]
    versions = [0] * accounts
    now = datetime.now(UTC)
    commits = []
    for i in range(commands):
        s = i % accounts
        keys = streams[s]
        events = []
        for _ in range(per_command):
            versions[s] += 1
            event = Event(
                new_event_id(),
                SortableUniqueId.generate(),
                versions[s],
                keys,
                MoneyDeposited(amount=1),
                now,
                EventMetadata(correlation_id=str(uuid.uuid4())),
            )
            events.append(SERIALIZER.to_stored(event))
        commits.append(events)
    return commits


def replay_commits(history: int) -> list[list[StoredEvent]]:
    """One stream of `history` events in the seeding's commit sizes."""
    events = [commit[0] for commit in stored_commits(history, 1, 1)]
    out, start = [], 0
    for size in commit_sizes(history, FILL_CHUNK):
        out.append(events[start : start + size])
        start += size
    return out


# --- SQLite ---------------------------------------------------------------------------

_SQLITE_INSERT = (
    "INSERT INTO commits (position, root_partition_key, aggregate_group, aggregate_id, "
    "first_version, last_version, events, command_id) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"
)
_SQLITE_READ = (
    "SELECT first_version, last_version, events FROM commits WHERE root_partition_key = ? "
    "AND aggregate_group = ? AND aggregate_id = ? ORDER BY last_version"
)


def _sqlite_rows(commits: list[list[StoredEvent]]) -> list[tuple[Any, ...]]:
    rows, position = [], 0
    for events in commits:
        keys = events[0].partition_keys
        position += len(events)
        rows.append(
            (
                position,
                keys.root_partition_key,
                keys.group,
                str(keys.aggregate_id),
                events[0].version,
                events[-1].version,
                encode_events(events),
            )
        )
    return rows


def _sqlite_connection(path: str, synchronous: str) -> sqlite3.Connection:
    from sekiban.stores.sqlite.schema import create_schema

    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    # No checkpoint inside a timed commit (sekiban checkpoints off the event loop): the
    # limit is the commits alone; `sqlite_append` checkpoints between them, untimed.
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    create_schema(connection)
    return connection


def sqlite_append(engine: SqliteEngine, rows: list[tuple[Any, ...]]) -> float:
    connection = _sqlite_connection(engine._fresh_path(), engine.synchronous)
    try:
        warm = max(1, len(rows) // 10)
        for row in rows[:warm]:
            connection.execute(_SQLITE_INSERT, row)
        gc.collect()
        clock, spent = time.perf_counter, 0.0
        for i, row in enumerate(rows[warm:], start=1):
            started = clock()
            connection.execute(_SQLITE_INSERT, row)  # autocommit: one transaction each
            spent += clock() - started
            if i % CHECKPOINT_EVERY == 0:
                # Untimed, as sekiban's runs off the event loop: the WAL is recycled (a
                # commit then overwrites it instead of growing the file, which at FULL
                # makes every fsync cheaper), and its cost is no commit's.
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return spent
    finally:
        connection.close()


def sqlite_replay(engine: SqliteEngine, history: int, repeat: int) -> list[float]:
    connection = _sqlite_connection(engine._fresh_path(), engine.synchronous)
    try:
        commits = replay_commits(history)
        for row in _sqlite_rows(commits):
            connection.execute(_SQLITE_INSERT, row)
        keys = commits[0][0].partition_keys
        stream = (keys.root_partition_key, keys.group, str(keys.aggregate_id))

        def read() -> int:
            count = 0
            for _, _, events in connection.execute(_SQLITE_READ, stream):
                count += len(json.loads(events))
            assert count == history, count
            return count

        read()
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            read()
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        connection.close()


# --- PostgreSQL -----------------------------------------------------------------------


def _pg_insert(table: str) -> str:
    return f"""
INSERT INTO {table} (position, root_partition_key, aggregate_group, aggregate_id, version,
    id, sortable_unique_id, event_type, payload, timestamp, causation_id, correlation_id,
    executed_user)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::uuid[], $5::integer[],
    $6::uuid[], $7::text[], $8::text[], $9::json[], $10::timestamptz[], $11::text[],
    $12::text[], $13::text[])"""


def _pg_args(commits: list[list[StoredEvent]], first_position: int) -> list[tuple[Any, ...]]:
    from sekiban.stores.postgres.appending import event_columns

    out, position = [], first_position
    for events in commits:
        keys = events[0].partition_keys
        positions = list(range(position, position + len(events)))
        position += len(events)
        out.append(
            (
                positions,
                [keys.root_partition_key] * len(events),
                [keys.group] * len(events),
                [keys.aggregate_id] * len(events),
                [e.version for e in events],
                *event_columns(events),
            )
        )
    return out


@asynccontextmanager
async def _pg_table(engine: PostgresEngine) -> AsyncIterator[tuple[Any, str]]:
    """An asyncpg connection and sekiban's events table, in a fresh schema."""
    import asyncpg

    from sekiban.stores.postgres import PostgresEventStore

    with engine._fresh_schema() as schema:
        store = await PostgresEventStore.open(engine.dsn, schema=schema)
        await store.close()
        connection = await asyncpg.connect(engine.dsn)
        try:
            yield connection, f'"{schema}"."sekiban_events"'
        finally:
            await connection.close()


async def postgres_append(engine: PostgresEngine, commits: list[list[StoredEvent]]) -> float:
    async with _pg_table(engine) as (connection, table):
        sql = _pg_insert(table)
        args = _pg_args(commits, 1)
        warm = max(1, len(args) // 10)
        for a in args[:warm]:
            await connection.execute(sql, *a)
        gc.collect()
        started = time.perf_counter()
        for a in args[warm:]:
            await connection.execute(sql, *a)
        return time.perf_counter() - started


async def postgres_replay(engine: PostgresEngine, history: int, repeat: int) -> list[float]:
    from sekiban.stores.postgres.reading import EVENT_COLUMNS

    async with _pg_table(engine) as (connection, table):
        commits = replay_commits(history)
        for a in _pg_args(commits, 1):
            await connection.execute(_pg_insert(table), *a)
        keys = commits[0][0].partition_keys
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM {table} WHERE root_partition_key = $1 AND "
            "aggregate_group = $2 AND aggregate_id = $3 ORDER BY version"
        )
        stream = (keys.root_partition_key, keys.group, keys.aggregate_id)
        await connection.fetch(sql, *stream)
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            rows = await connection.fetch(sql, *stream)
            samples.append(time.perf_counter() - started)
            assert len(rows) == history
        return samples


# --- all of it ------------------------------------------------------------------------


async def measure_limits(
    engines: list[Engine],
    events: int,
    accounts: int,
    replay_events: int,
    repeat: int,
    step: Callable[[str], None] = lambda _: None,
) -> list[Limit]:
    """The driver's append (1 and 10 events per command over `accounts` streams, `events`
    events timed after a 10% warm-up) and replay (`replay_events`) rates per engine."""
    limits: list[Limit] = []
    for engine in engines:
        if not isinstance(engine, SqliteEngine | PostgresEngine):
            continue
        said = durability(engine)
        for k in (1, 10):
            commands = events // k
            warm = max(1, commands // 10)
            commits = stored_commits(commands + warm, k, accounts)
            limit = Limit(engine.name, f"append_{k}", commands * k, said)
            for _ in range(repeat):
                step(f"{engine.name}: raw driver, append {k}/cmd")
                if isinstance(engine, SqliteEngine):
                    limit.seconds.append(sqlite_append(engine, _sqlite_rows(commits)))
                else:
                    limit.seconds.append(await postgres_append(engine, commits))
            limits.append(limit)
        # Reads do not depend on `synchronous`: one SQLite replay limit is enough.
        if replay_events and engine.name != "sqlite-full":
            step(f"{engine.name}: raw driver, replay")
            limit = Limit(engine.name, "replay", replay_events, said)
            if isinstance(engine, SqliteEngine):
                limit.seconds = sqlite_replay(engine, replay_events, max(5, repeat))
            else:
                limit.seconds = await postgres_replay(engine, replay_events, max(5, repeat))
            limits.append(limit)
    return limits
