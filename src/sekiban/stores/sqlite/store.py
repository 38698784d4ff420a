"""The SQLite event store: opens the database and composes the append, the reads and
the snapshot store beside it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import ConcurrencyError, DuplicateCommandError
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.leases import FileLeases, Lease, LocalLeases
from sekiban.stores.protocols import (
    DEFAULT_BATCH_SIZE,
    ClosesOnExit,
    SnapshotStore,
    check_append,
    check_batch_size,
    check_command_id,
    rebatch,
)
from sekiban.stores.snapshot_rows import snapshot_from_columns
from sekiban.stores.sqlite.appending import encode_events, insert, stream_version
from sekiban.stores.sqlite.database import Database
from sekiban.stores.sqlite.faults import translate, translate_faults
from sekiban.stores.sqlite.group_commit import GroupCommit, Outcome
from sekiban.stores.sqlite.projections import SqliteProjectionStore
from sekiban.stores.sqlite.reading import (
    READ_ALL,
    READ_CHUNK,
    READ_STREAM,
    command_rows,
    decode_events,
    head_position,
    read_rows,
    snapshot_and_stream_rows,
    stream_decoded,
    stream_events,
)
from sekiban.stores.sqlite.schema import stream_key
from sekiban.stores.sqlite.snapshots import SqliteSnapshotStore
from sekiban.stores.stream_keys import StreamKeys


class SqliteEventStore(ClosesOnExit):
    """Events in a SQLite file (WAL mode). Safe for several processes on one machine.

    Open it with `async with await SqliteEventStore.open(path) as store:`; leaving the
    block (or `close()`) closes the database, which `snapshot_store()` and
    `projection_store()` share.

    `read_stream` and `read_all` fetch commits until they hold `READ_CHUNK` events (at
    most one commit more), let the event loop run other tasks between two such reads,
    and hand the events out in batches of `batch_size`.
    sqlite3's errors are raised as `StoreBusyError`, `StoreConnectionError` or
    `StoreError` (see `faults.translate_faults`).
    """

    def __init__(self, database: Database, *, group_commit: bool = True) -> None:
        self._db = database
        self._group = GroupCommit(database, insert) if group_commit else None
        self._leases: LocalLeases | FileLeases = (
            LocalLeases() if database.path == ":memory:" else FileLeases(database.path)
        )

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout: timedelta = timedelta(seconds=5),
        synchronous: str = "NORMAL",
        group_commit: bool = True,
    ) -> SqliteEventStore:
        """Open (creating if needed) the database file at `path` (":memory:" for a
        database in memory, gone when closed).

        `synchronous` is SQLite's durability setting in WAL mode: "NORMAL" (the default:
        a commit survives a crash of the process, the last commits before a power loss
        or OS crash may be lost), "FULL" (a commit also survives a power loss: one fsync
        per commit, shared by the appends of a group commit) or "EXTRA";
        docs/performance.md has the trade-off. Anything else is `ConfigurationError`.

        `group_commit` (on by default) writes the appends that concurrent tasks make in
        one turn of the event loop in one transaction (see `group_commit`): one commit,
        and at FULL one fsync, for all of them, each command still checked and atomic on
        its own. A lone writer's append is written at once, as without it; False writes
        every append in a transaction of its own.

        A statement that finds the file locked by another writer (another process, or a
        connection holding `BEGIN IMMEDIATE`) waits up to `busy_timeout` for it, then
        raises `StoreBusyError` having written nothing. A file that cannot be opened
        or created raises `StoreConnectionError`.
        """
        database = Database(str(path), busy_timeout, synchronous)
        with translate_faults(database.where):
            await database.open()
        return cls(database, group_commit=group_commit)

    def snapshot_store(self) -> SqliteSnapshotStore:
        """A snapshot store in the same database file, sharing the connection."""
        return SqliteSnapshotStore(self._db)

    def projection_store(self) -> SqliteProjectionStore:
        """A projection store in the same database file, sharing the connection."""
        return SqliteProjectionStore(self._db)

    async def close(self) -> None:
        with translate_faults(self._db.where):
            await self._db.close()

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        keys = check_append(events, expected_version)
        command_id = check_command_id(command_id)
        stream = stream_key(keys)
        count = len(events)
        commit = (
            *stream,
            expected_version + 1,
            expected_version + count,
            encode_events(events),
            command_id,
        )
        try:
            outcome = await self._write((count, *commit, *stream, expected_version))
        except sqlite3.Error as error:
            raise translate(error, self._db.where, writing=True) from error
        inserted = outcome is True
        if isinstance(outcome, sqlite3.IntegrityError):
            # One of the two unique indexes: the stream's version, or its command id.
            if command_id is not None:
                with translate_faults(self._db.where):
                    rows = await self._db.run(command_rows, stream, command_id)
                if rows:
                    raise DuplicateCommandError(keys, command_id) from None
        elif isinstance(outcome, sqlite3.Error):
            # Its statement alone failed and was undone: nothing of it was written.
            raise translate(outcome, self._db.where) from outcome
        if not inserted:
            with translate_faults(self._db.where):
                actual = await self._db.run(stream_version, stream)
            raise ConcurrencyError(keys, expected_version, actual)

    async def _write(self, parameters: tuple[object, ...]) -> Outcome:
        """The INSERT's outcome: alone, or with the other appends of this loop turn."""
        if self._group is not None:
            return await self._group.append(parameters)
        try:
            return await self._db.run(insert, parameters)
        except sqlite3.IntegrityError as error:
            return error

    async def try_lease(self, name: str) -> Lease | None:
        """A lease among the processes of this host using this file: an exclusive
        `flock` on a file beside it, dropped by the kernel with the process (see
        `sekiban.stores.leases`). A database in memory has leases among this process's
        runners only."""
        return await self._leases.try_lease(name)

    async def count_events_after(self, position: int) -> int:
        # Positions number the events 1, 2, 3, ... without gaps (see the module), and a
        # commit's row key is its last event's: the head is the largest key.
        with translate_faults(self._db.where):
            head = await self._db.run(head_position)
        return max(0, head - max(position, 0))

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        rows = await self._db.run(command_rows, stream_key(partition_keys), command_id)
        return stream_events(rows, partition_keys, 0, positions=True) or None

    def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        stream = stream_key(partition_keys)

        async def pages(after: int) -> AsyncIterator[list[StoredEvent]]:
            limit = min(batch_size, READ_CHUNK)
            while True:
                rows = await self._stream_rows(stream, after, limit)
                page = stream_events(rows, partition_keys, after, positions=True)
                if page:
                    yield page
                    after = page[-1].version
                if len(page) < limit:
                    return
                await asyncio.sleep(0)  # the statements never wait: let other tasks run

        return rebatch(pages(after_version), batch_size)

    async def read_stream_decoded(
        self,
        partition_keys: PartitionKeys,
        after_version: int,
        batch_size: int,
        serializer: Serializer,
    ) -> AsyncIterator[Iterator[Event[EventPayload]]]:
        """`read_stream`, decoded lazily by `serializer.commit_events` (`DecodingReader`)."""
        check_batch_size(batch_size)
        stream = stream_key(partition_keys)
        after, limit = after_version, min(batch_size, READ_CHUNK)
        while True:
            rows = await self._stream_rows(stream, after, limit)
            if rows:
                yield stream_decoded(rows, partition_keys, after, serializer)
            if sum(last - max(first, after + 1) + 1 for first, last, *_ in rows) < limit:
                return
            after = rows[-1][1]
            await asyncio.sleep(0)

    async def _stream_rows(self, stream: tuple[str, str, str], after: int, limit: int) -> Any:
        """The stream's commits holding the `limit` events after version `after`."""
        with translate_faults(self._db.where):
            return await self._db.run(read_rows, READ_STREAM, (*stream, after), after, limit)

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
        stream = stream_key(partition_keys)
        with translate_faults(self._db.where):
            row, after, rows = await self._db.run(
                snapshot_and_stream_rows, stream, projector_name, batch_size
            )
        snapshot = None
        if row is not None:
            snapshot = snapshot_from_columns(partition_keys, projector_name, row[2:])
        return snapshot, stream_events(rows, partition_keys, after, positions=True)[:batch_size]

    def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        streams = StreamKeys(PartitionKeys.existing)

        async def pages(after: int) -> AsyncIterator[list[StoredEvent]]:
            limit = min(batch_size, READ_CHUNK)
            while True:
                with translate_faults(self._db.where):
                    rows = await self._db.run(read_rows, READ_ALL, (after,), after, limit)
                page: list[StoredEvent] = []
                for first_position, _, events, root, group, aggregate_id, first, last in rows:
                    keys = streams.get(aggregate_id, group, root)
                    skip = max(0, after + 1 - first_position)
                    page += decode_events(events, keys, first, last, first_position)[skip:]
                if page:
                    yield page
                    after = page[-1].position or after
                if len(page) < limit:
                    return
                await asyncio.sleep(0)

        return rebatch(pages(after_position), batch_size)
