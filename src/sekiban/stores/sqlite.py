"""SQLite event and snapshot stores: the embedded default, one file, no server.

One row per commit: an append inserts a single row holding the command's events as a
JSON array, so a ten-event command costs SQLite one row and one index entry, not ten.
The INSERT is atomic by itself and also checks the expected version; it runs directly
on the event loop unless another writer holds the lock (see `_Database`).

Positions number events 1, 2, 3, ... in commit order: a commit's row key is the
position of its last event, computed inside the write transaction, and SQLite runs
one write transaction at a time per database, so a reader resuming from its last
position cannot miss an event. Rows are found by their last event (position, or
version within the stream), so a read after any event starts at the commit holding
the next one. The view `events` shows one row per event for people
and ad-hoc SQL; the store itself never reads it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sekiban.core.fastpaths import scan_json_value
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent, rebuild_stored_event
from sekiban.errors import ConcurrencyError, ConfigurationError, SerializationError
from sekiban.snapshot.types import (
    AggregateSnapshot,
)
from sekiban.stores.protocols import (
    DEFAULT_BATCH_SIZE,
    SnapshotStore,
    check_append,
    check_batch_size,
    rebatch,
)
from sekiban.stores.snapshot_rows import (
    SNAPSHOT_COLUMNS,
    snapshot_columns,
    snapshot_from_columns,
)

T = TypeVar("T")

# A commit's `events`: [[id, sortable_unique_id, event_type, payload, timestamp,
# causation_id, correlation_id, executed_user], ...] for versions first_version, ...
_SCHEMA = """
CREATE TABLE IF NOT EXISTS commits (
    position INTEGER PRIMARY KEY,
    root_partition_key TEXT NOT NULL,
    aggregate_group TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    first_version INTEGER NOT NULL,
    last_version INTEGER NOT NULL,
    events TEXT NOT NULL,
    UNIQUE (root_partition_key, aggregate_group, aggregate_id, last_version)
);
CREATE VIEW IF NOT EXISTS events AS
SELECT
    c.position - c.last_version + c.first_version + e.key AS position,
    json_extract(e.value, '$[0]') AS id,
    json_extract(e.value, '$[1]') AS sortable_unique_id,
    c.root_partition_key,
    c.aggregate_group,
    c.aggregate_id,
    c.first_version + e.key AS version,
    json_extract(e.value, '$[2]') AS event_type,
    json_extract(e.value, '$[3]') AS payload,
    json_extract(e.value, '$[4]') AS timestamp,
    json_extract(e.value, '$[5]') AS causation_id,
    json_extract(e.value, '$[6]') AS correlation_id,
    json_extract(e.value, '$[7]') AS executed_user
FROM commits AS c, json_each(c.events) AS e;
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

# Insert one commit only if the stream ends at the expected version. The WHERE runs
# inside the write transaction, which SQLite gives one writer at a time, so it sees
# every commit before it; the unique (stream, last_version) is a second line. The key
# is the position of the commit's last event (the first parameter: its event count).
_APPEND = f"""
INSERT INTO commits
    (position, root_partition_key, aggregate_group, aggregate_id, first_version,
     last_version, events)
SELECT COALESCE((SELECT MAX(position) FROM commits), 0) + ?, ?, ?, ?, ?, ?, ?
WHERE COALESCE((SELECT MAX(last_version) FROM commits WHERE {_STREAM}), 0) = ?
"""

# Reads go through the commits in order and stop once they hold a batch of events
# (`_take`): a commit may hold any number of events, so a row count bounds nothing.
# Every read's rows start with (first, last): the commit's first and last version, or
# position, to count its events by.

# The commits holding versions after ?, the first of them perhaps begun before it.
_READ_STREAM = f"""
SELECT first_version, last_version, events FROM commits
WHERE {_STREAM} AND last_version > ? ORDER BY last_version
"""

_SNAPSHOT_COLUMNS_COUNT = len(SNAPSHOT_COLUMNS.split(","))
# The snapshot (if any) on a first row, its columns after two NULLs; then the commits from
# the one holding its version (from version 1 without one).
_SNAPSHOT_AND_STREAM = f"""
SELECT NULL, NULL, {SNAPSHOT_COLUMNS} FROM snapshots WHERE {_STREAM} AND projector_name = ?
UNION ALL
SELECT * FROM (
    SELECT first_version, last_version, events,
        {", ".join(["NULL"] * (_SNAPSHOT_COLUMNS_COUNT - 1))}
    FROM commits
    WHERE {_STREAM} AND last_version >= COALESCE(
        (SELECT version FROM snapshots WHERE {_STREAM} AND projector_name = ?), 1)
    ORDER BY last_version)
"""

_READ_ALL = """
SELECT position - last_version + first_version, position, events,
    root_partition_key, aggregate_group, aggregate_id, first_version, last_version
FROM commits WHERE position > ? ORDER BY position
"""

_encode_json = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def _create_schema(connection: sqlite3.Connection) -> None:
    row = connection.execute("SELECT type FROM sqlite_master WHERE name = 'events'").fetchone()
    if row is not None and row[0] == "table":
        raise ConfigurationError(
            "this SQLite file has the one-row-per-event `events` table of sekiban before "
            "0.1.0; this version keeps one row per commit (table `commits`) and cannot "
            "read it: start from a new file"
        )
    connection.executescript(_SCHEMA)


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
            _create_schema(self.connection)
            return
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sekiban-sqlite")
        try:
            self._waiting = await loop.run_in_executor(self._executor, self._connect, 10_000)
            await loop.run_in_executor(self._executor, _create_schema, self._waiting)
        except BaseException:
            await self.close()
            raise
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


class SqliteEventStore:
    """Events in a SQLite file (WAL mode). Safe for several processes on one machine.

    `read_stream` and `read_all` fetch commits until they hold a batch (at most one
    commit more than `batch_size` events) and hand them out in batches of `batch_size`.
    """

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
        count = len(events)
        commit = (*stream, expected_version + 1, expected_version + count, _encode_events(events))
        try:
            inserted = await self._db.run(_insert, (count, *commit, *stream, expected_version))
        except sqlite3.IntegrityError:
            inserted = False
        if not inserted:
            actual = await self._db.run(_stream_version, stream)
            raise ConcurrencyError(keys, expected_version, actual)

    def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        stream = _stream_key(partition_keys)

        async def pages(after: int) -> AsyncIterator[list[StoredEvent]]:
            while True:
                rows = await self._db.run(_read, _READ_STREAM, (*stream, after), after, batch_size)
                page = _stream_events(rows, partition_keys, after)
                if page:
                    yield page
                    after = page[-1].version
                if len(page) < batch_size:
                    return

        return rebatch(pages(after_version), batch_size)

    def reads_snapshots_of(self, snapshot_store: SnapshotStore) -> bool:
        """True for the snapshot store of this database (`snapshot_store()`): a load then
        reads the snapshot and the events after it in one call."""
        return isinstance(snapshot_store, SqliteSnapshotStore) and snapshot_store._db is self._db

    async def read_snapshot_and_stream(
        self, partition_keys: PartitionKeys, projector_name: str, batch_size: int
    ) -> tuple[AggregateSnapshot | None, list[StoredEvent]]:
        """The snapshot and the first `batch_size` events from its version (from version
        1 without one); see `SnapshotStreamReader`."""
        check_batch_size(batch_size)
        stream = _stream_key(partition_keys)

        def read(connection: sqlite3.Connection) -> tuple[Any, int, list[Any]]:
            parameters = (*stream, projector_name, *stream, *stream, projector_name)
            cursor = connection.execute(_SNAPSHOT_AND_STREAM, parameters)
            first = cursor.fetchone()
            if first is None or first[0] is not None:  # no snapshot row
                return None, 0, _take(cursor, 0, batch_size, first)
            version = first[2]  # the events are read from the snapshot's version on
            after = version - 1 if isinstance(version, int) and version > 0 else 0
            return first, after, _take(cursor, after, batch_size)

        row, after, rows = await self._db.run(read)
        snapshot = None
        if row is not None:
            snapshot = snapshot_from_columns(partition_keys, projector_name, row[2:])
        return snapshot, _stream_events(rows, partition_keys, after)[:batch_size]

    def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        keys_cache: dict[tuple[str, str, str], PartitionKeys] = {}

        async def pages(after: int) -> AsyncIterator[list[StoredEvent]]:
            while True:
                rows = await self._db.run(_read, _READ_ALL, (after,), after, batch_size)
                page: list[StoredEvent] = []
                for first_position, _, events, root, group, aggregate_id, first, last in rows:
                    stream = (root, group, aggregate_id)
                    keys = keys_cache.get(stream)
                    if keys is None:
                        keys = keys_cache[stream] = PartitionKeys.existing(
                            aggregate_id, group, root
                        )
                    skip = max(0, after + 1 - first_position)
                    page += _decode_events(events, keys, first, last, first_position)[skip:]
                if page:
                    yield page
                    after = page[-1].position or after
                if len(page) < batch_size:
                    return

        return rebatch(pages(after_position), batch_size)


def _read(
    connection: sqlite3.Connection, sql: str, parameters: tuple[Any, ...], after: int, limit: int
) -> list[Any]:
    return _take(connection.execute(sql, parameters), after, limit)


def _take(cursor: sqlite3.Cursor, after: int, limit: int, first: Any = None) -> list[Any]:
    """Rows of (first, last, ...) from `cursor` (after `first`, if given) until they hold
    `limit` events after `after`, or the rows run out."""
    rows, count = [], 0
    try:
        for row in cursor if first is None else itertools.chain([first], cursor):
            rows.append(row)
            try:
                count += row[1] - max(row[0], after + 1) + 1
            except TypeError:
                raise SerializationError(
                    f"a commit row holds {row[0]!r} and {row[1]!r} as its first and last "
                    "version or position"
                ) from None
            if count >= limit:
                break
    finally:
        cursor.close()
    return rows


def _stream_events(rows: list[Any], keys: PartitionKeys, after: int) -> list[StoredEvent]:
    """The events after version `after` in rows of (first_version, last_version, events)."""
    events: list[StoredEvent] = []
    for row in rows:
        first_version, last_version, text = row[0], row[1], row[2]
        skip = max(0, after + 1 - first_version)  # a commit begun before `after`
        events += _decode_events(text, keys, first_version, last_version, None)[skip:]
    return events


def _fetch_snapshot(
    connection: sqlite3.Connection, stream: tuple[str, str, str], projector_name: str
) -> Any:
    return connection.execute(
        f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE {_STREAM} AND projector_name = ?",
        (*stream, projector_name),
    ).fetchone()


def _insert(connection: sqlite3.Connection, parameters: tuple[Any, ...]) -> bool:
    return bool(connection.execute(_APPEND, parameters).rowcount)


def _stream_version(connection: sqlite3.Connection, stream: tuple[str, str, str]) -> int:
    (version,) = connection.execute(
        f"SELECT COALESCE(MAX(last_version), 0) FROM commits WHERE {_STREAM}", stream
    ).fetchone()
    return int(version)


def _encode_events(events: Sequence[StoredEvent]) -> str:
    stamp: datetime | None = None
    text = ""
    rows = []
    for e in events:
        if e.timestamp is not stamp:  # one command's events share one timestamp
            stamp, text = e.timestamp, e.timestamp.isoformat()
        rows.append(
            (
                e.id,
                e.sortable_unique_id,
                e.event_type,
                e.payload,
                text,
                e.causation_id,
                e.correlation_id,
                e.executed_user,
            )
        )
    return _encode_json(rows)


def _decode_events(
    text: str,
    keys: PartitionKeys,
    first_version: int,
    last_version: int,
    first_position: int | None,
) -> list[StoredEvent]:
    stamp, timestamp = "", None
    events = []
    try:
        rows, end = scan_json_value(text, 0)
        if end != len(text):
            raise ValueError(f"extra data after the JSON array at {end}")
        if len(rows) != last_version - first_version + 1:
            raise ValueError(f"{len(rows)} events for versions {first_version} to {last_version}")
        for i, row in enumerate(rows):
            event_id, sortable_id, event_type, payload, at, causation, correlation, user = row
            if at != stamp:
                stamp, timestamp = at, datetime.fromisoformat(at)
            position = None if first_position is None else first_position + i
            events.append(
                rebuild_stored_event(
                    event_id,
                    sortable_id,
                    first_version + i,
                    keys,
                    event_type,
                    payload,
                    timestamp,
                    causation,
                    correlation,
                    user,
                    position,
                )
            )
    except (ValueError, TypeError, StopIteration) as error:  # StopIteration: not JSON
        raise SerializationError(
            f"the commit of {keys} from version {first_version} cannot be decoded: {error!r}"
        ) from None
    return events


class SqliteSnapshotStore:
    """The latest snapshot per (aggregate, projector) in the event store's database."""

    def __init__(self, database: _Database) -> None:
        self._db = database

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        row = await self._db.run(_fetch_snapshot, _stream_key(partition_keys), projector_name)
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
