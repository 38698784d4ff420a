"""SQLite event and snapshot stores: the embedded default, one file, no server.

Every operation runs on one dedicated thread that owns the connection, so an append
(check the version, insert the events, commit) is a single hop from the event loop.
Positions come from an AUTOINCREMENT key assigned inside the write transaction, and
SQLite runs one write transaction at a time per database, so position order is commit
order: a reader resuming from its last position cannot miss an event.
"""

from __future__ import annotations

import asyncio
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
    RejectionReason,
    SnapshotEncoding,
    SnapshotMetadata,
    SnapshotRejectedError,
    SnapshotRejection,
)
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, check_append

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
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
    """One connection, used only from one thread."""

    def __init__(self, path: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sekiban-sqlite")
        self._path = path
        self.connection: sqlite3.Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the connection's thread."""

        def call() -> T:
            if self.connection is None:
                raise RuntimeError("the SQLite store is closed")
            return fn(self.connection, *args)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def open(self) -> None:
        def connect() -> None:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE,
            # which takes the write lock up front instead of failing at commit.
            connection = sqlite3.connect(self._path, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=10000")
            connection.executescript(_SCHEMA)
            self.connection = connection

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self.connection is not None:
                self.connection.close()
                self.connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=True)


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

        def append(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                (current,) = connection.execute(
                    f"SELECT COALESCE(MAX(version), 0) FROM events WHERE {_STREAM}", stream
                ).fetchone()
                if current != expected_version:
                    raise ConcurrencyError(keys, expected_version, current)
                connection.executemany(
                    "INSERT INTO events (id, sortable_unique_id, root_partition_key, "
                    "aggregate_group, aggregate_id, version, event_type, payload, timestamp, "
                    "causation_id, correlation_id, executed_user) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

        try:
            await self._db.run(append)
        except sqlite3.IntegrityError:
            raise ConcurrencyError(keys, expected_version, None) from None

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
                "SELECT version, last_sortable_unique_id, payload, projector_version, "
                "payload_type, format_version, encoding, checksum, taken_at, "
                f"events_since_previous FROM snapshots WHERE {_STREAM} AND projector_name = ?",
                (*_stream_key(partition_keys), projector_name),
            ).fetchone()

        row = await self._db.run(fetch)
        if row is None:
            return None
        try:
            return AggregateSnapshot(
                partition_keys,
                row[0],
                row[1],
                bytes(row[2]),
                SnapshotMetadata(
                    projector_name,
                    row[3],
                    row[4],
                    row[5],
                    SnapshotEncoding(row[6]),
                    row[7],
                    datetime.fromisoformat(row[8]),
                    row[9],
                ),
            )
        except (ValueError, TypeError) as error:
            raise SnapshotRejectedError(
                SnapshotRejection(RejectionReason.CORRUPT, f"unreadable snapshot row: {error}")
            ) from None

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        m = snapshot.metadata
        row = (
            *_stream_key(snapshot.partition_keys),
            m.projector_name,
            snapshot.version,
            snapshot.last_sortable_unique_id,
            snapshot.payload,
            m.projector_version,
            m.payload_type,
            m.format_version,
            m.encoding.value,
            m.checksum,
            m.taken_at.isoformat(),
            m.events_since_previous,
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
