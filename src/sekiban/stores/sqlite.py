"""SQLite event and snapshot stores: the embedded default, one file, no server.

An append is one INSERT statement (atomic by itself) that also checks the expected
version, run directly on the event loop unless another writer holds the lock (see
`_Database`). Positions are the rowid (max + 1, assigned inside the write transaction), and
SQLite runs one write transaction at a time per database, so position order is commit
order: a reader resuming from its last position cannot miss an event. (Events are
never deleted, so no position is handed out twice; `AUTOINCREMENT` and a unique index
on the random event id would each cost a B-tree write per event for nothing.)
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sekiban.core.errors import ConcurrencyError
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent, rebuild_stored_event
from sekiban.snapshot.types import (
    AggregateSnapshot,
)
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, check_append
from sekiban.stores.snapshot_rows import (
    SNAPSHOT_COLUMNS,
    snapshot_columns,
    snapshot_from_columns,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    sortable_unique_id TEXT NOT NULL,
    root_partition_key TEXT NOT NULL,
    aggregate_group TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    causation_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    executed_user TEXT NOT NULL,
    UNIQUE (root_partition_key, aggregate_group, aggregate_id, version)
);
CREATE TABLE IF NOT EXISTS snapshots (
    root_partition_key TEXT NOT NULL,
    aggregate_group TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    projector_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_sortable_unique_id TEXT,
    payload BLOB NOT NULL,
    projector_version TEXT NOT NULL,
    payload_type TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    checksum INTEGER NOT NULL,
    taken_at TEXT NOT NULL,
    events_since_previous INTEGER NOT NULL,
    PRIMARY KEY (root_partition_key, aggregate_group, aggregate_id, projector_name)
);
"""

_STREAM = "root_partition_key = ? AND aggregate_group = ? AND aggregate_id = ?"
_EVENT_COLUMNS = (
    "id, sortable_unique_id, version, event_type, payload, timestamp, "
    "causation_id, correlation_id, executed_user, position"
)


def _stream_key(keys: PartitionKeys) -> tuple[str, str, str]:
    return keys.root_partition_key, keys.group, str(keys.aggregate_id)


class _Database:
    """Two connections to one database file.

    Statements run directly on the event loop's connection, which never waits for a
    lock (`busy_timeout=0`): a local SQLite statement takes microseconds, less than a
    hop to a thread. When another connection or process holds the write lock, the
    statement fails at once with SQLITE_BUSY, before changing anything, and is run again
    on a worker thread whose connection waits for the lock. An in-memory database has
    a single connection (a second one would be another database).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self.connection: sqlite3.Connection | None = None
        self._waiting: sqlite3.Connection | None = None

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        # Autocommit: every statement is its own transaction unless BEGIN says otherwise.
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if self._path != ":memory:":
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    async def open(self) -> None:
        if self._path == ":memory:":
            self.connection = self._connect(0)
            self.connection.executescript(_SCHEMA)
            return
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sekiban-sqlite")
        self._waiting = await loop.run_in_executor(self._executor, self._connect, 10_000)
        await loop.run_in_executor(self._executor, self._waiting.executescript, _SCHEMA)
        self.connection = self._connect(0)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)`: at once on the loop, or, if the database is locked
        by another writer, on the worker thread once the lock is free."""
        if self.connection is None:
            raise RuntimeError("the SQLite store is closed")
        try:
            return fn(self.connection, *args)
        except sqlite3.OperationalError as error:
            # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary code in the low byte.
            if self._waiting is None or error.sqlite_errorcode & 0xFF not in _BUSY:
                raise
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._waiting, *args)

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self._executor is not None:
            waiting, self._waiting = self._waiting, None
            if waiting is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, waiting.close)
            self._executor.shutdown(wait=True)
            self._executor = None


_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
# One multi-row INSERT is atomic by itself; beyond this many rows (SQLite limits the
# number of parameters of a statement) an append uses an explicit transaction.
_ROWS_PER_STATEMENT = 500
_EVENT_INSERT_COLUMNS = (
    "id, sortable_unique_id, root_partition_key, aggregate_group, aggregate_id, version, "
    "event_type, payload, timestamp, causation_id, correlation_id, executed_user"
)


@functools.cache
def _append_sql(rows: int) -> str:
    """Insert `rows` events only if the stream is at the expected version.

    The unique (stream, version) constraint rejects a stale expected version; the
    EXISTS rejects one beyond the end of the stream (which would leave a gap).
    """
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO events ({_EVENT_INSERT_COLUMNS}) SELECT * FROM (VALUES {values}) "
        f"WHERE ? = 0 OR EXISTS (SELECT 1 FROM events WHERE {_STREAM} AND version = ?)"
    )


class SqliteEventStore:
    """Events in a SQLite file (WAL mode). Safe for several processes on one machine."""

    def __init__(self, database: _Database) -> None:
        self._db = database

    @classmethod
    async def open(cls, path: str | Path) -> SqliteEventStore:
        """Open (creating if needed) the database file at `path`."""
        database = _Database(str(path))
        await database.open()
        return cls(database)

    def snapshot_store(self) -> SqliteSnapshotStore:
        """A snapshot store in the same database file, sharing the connection."""
        return SqliteSnapshotStore(self._db)

    async def close(self) -> None:
        await self._db.close()

    async def append(self, events: Sequence[StoredEvent], expected_version: int) -> None:
        keys = check_append(events, expected_version)
        stream = _stream_key(keys)
        rows = [
            (
                e.id,
                e.sortable_unique_id,
                *stream,
                e.version,
                e.event_type,
                e.payload,
                e.timestamp.isoformat(),
                e.causation_id,
                e.correlation_id,
                e.executed_user,
            )
            for e in events
        ]
        try:
            inserted = await self._db.run(_append, rows, stream, expected_version)
        except sqlite3.IntegrityError:
            inserted = 0
        if inserted != len(rows):
            actual = await self._db.run(_stream_version, stream)
            raise ConcurrencyError(keys, expected_version, actual)

    async def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        stream = _stream_key(partition_keys)
        query = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {_STREAM} AND version > ? "
            "ORDER BY version LIMIT ?"
        )

        def fetch(connection: sqlite3.Connection, after: int) -> list[StoredEvent]:
            rows = connection.execute(query, (*stream, after, batch_size)).fetchall()
            return [_event(row, partition_keys) for row in rows]

        while True:
            batch = await self._db.run(fetch, after_version)
            if batch:
                yield batch
            if len(batch) < batch_size:
                return
            after_version = batch[-1].version

    async def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        query = (
            f"SELECT {_EVENT_COLUMNS}, root_partition_key, aggregate_group, aggregate_id "
            "FROM events WHERE position > ? ORDER BY position LIMIT ?"
        )
        keys_cache: dict[tuple[str, str, str], PartitionKeys] = {}

        def fetch(connection: sqlite3.Connection, after: int) -> list[StoredEvent]:
            batch = []
            for row in connection.execute(query, (after, batch_size)):
                stream = row[10:13]
                keys = keys_cache.get(stream)
                if keys is None:
                    keys = keys_cache[stream] = PartitionKeys.existing(
                        stream[2], stream[1], stream[0]
                    )
                batch.append(_event(row, keys))
            return batch

        while True:
            batch = await self._db.run(fetch, after_position)
            if batch:
                yield batch
            if len(batch) < batch_size:
                return
            after_position = batch[-1].position or after_position


def _append(
    connection: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    stream: tuple[str, str, str],
    expected_version: int,
) -> int:
    """Insert the rows as one atomic write; returns how many were inserted."""
    guard = (expected_version, *stream, expected_version)
    if len(rows) <= _ROWS_PER_STATEMENT:
        flat = [value for row in rows for value in row]
        return connection.execute(_append_sql(len(rows)), (*flat, *guard)).rowcount
    connection.execute("BEGIN IMMEDIATE")
    try:
        if _stream_version(connection, stream) != expected_version:
            connection.execute("ROLLBACK")
            return 0
        connection.executemany(
            f"INSERT INTO events ({_EVENT_INSERT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return len(rows)


def _stream_version(connection: sqlite3.Connection, stream: tuple[str, str, str]) -> int:
    (version,) = connection.execute(
        f"SELECT COALESCE(MAX(version), 0) FROM events WHERE {_STREAM}", stream
    ).fetchone()
    return int(version)


def _event(row: Any, keys: PartitionKeys) -> StoredEvent:
    return rebuild_stored_event(
        row[0],
        row[1],
        row[2],
        keys,
        row[3],
        row[4],
        datetime.fromisoformat(row[5]),
        row[6],
        row[7],
        row[8],
        row[9],
    )


class SqliteSnapshotStore:
    """The latest snapshot per (aggregate, projector) in the event store's database."""

    def __init__(self, database: _Database) -> None:
        self._db = database

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        def fetch(connection: sqlite3.Connection) -> Any:
            return connection.execute(
                f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE {_STREAM} AND projector_name = ?",
                (*_stream_key(partition_keys), projector_name),
            ).fetchone()

        row = await self._db.run(fetch)
        if row is None:
            return None
        return snapshot_from_columns(partition_keys, projector_name, row)

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        row = (
            *_stream_key(snapshot.partition_keys),
            snapshot.metadata.projector_name,
            *snapshot_columns(snapshot, text_timestamp=True),
        )

        def upsert(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET version = excluded.version, "
                "last_sortable_unique_id = excluded.last_sortable_unique_id, "
                "payload = excluded.payload, projector_version = excluded.projector_version, "
                "payload_type = excluded.payload_type, format_version = excluded.format_version, "
                "encoding = excluded.encoding, checksum = excluded.checksum, "
                "taken_at = excluded.taken_at, "
                "events_since_previous = excluded.events_since_previous "
                "WHERE snapshots.version <= excluded.version",
                row,
            )
            return cursor.rowcount == 1

        return await self._db.run(upsert)

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        def delete(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"DELETE FROM snapshots WHERE {_STREAM} AND projector_name = ?",
                (*_stream_key(partition_keys), projector_name),
            )

        await self._db.run(delete)

    async def close(self) -> None:
        return None
