"""The PostgreSQL event store: the pool, the schema's creation and the append and
read statements run on it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from typing import Any

from sekiban._extras import require_extra
from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import ConcurrencyError, ConfigurationError, DuplicateCommandError
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.leases import Lease
from sekiban.stores.postgres.appending import append_sql, event_columns, stream_version_sql
from sekiban.stores.postgres.faults import describe, translate_faults
from sekiban.stores.postgres.group_commit import (
    Command,
    PostgresGroupCommit,
    group_append_sql,
    group_arguments,
    inserted_commands,
)
from sekiban.stores.postgres.leases import PostgresLeases
from sekiban.stores.postgres.notifications import AppendListener, channel_name, notify_ddl
from sekiban.stores.postgres.projections import PostgresProjectionStore
from sekiban.stores.postgres.reading import (
    ENVELOPE_COLUMNS,
    read_all_sql,
    read_bound_sql,
    read_command_sql,
    read_stream_sql,
    snapshot_and_stream_sql,
    stored_event,
)
from sekiban.stores.postgres.schema import (
    MAX_EVENTS_PER_APPEND,
    POSITION_BITS,
    Tables,
    ddl,
    stream_key,
)
from sekiban.stores.postgres.snapshots import PostgresSnapshotStore
from sekiban.stores.protocols import (
    DEFAULT_BATCH_SIZE,
    ClosesOnExit,
    SnapshotStore,
    check_append,
    check_batch_size,
    check_command_id,
)
from sekiban.stores.snapshot_rows import snapshot_from_columns
from sekiban.stores.stream_keys import StreamKeys

with require_extra("postgres", "sekiban.stores.postgres"):
    import asyncpg


log = logging.getLogger("sekiban.stores.postgres")


class PostgresEventStore(ClosesOnExit):
    """Event streams in one PostgreSQL table; see the module docstring for guarantees.

    Open it with `async with await PostgresEventStore.open(dsn, ...) as store:`;
    leaving the block (or `close()`) closes the pool, which `snapshot_store()` and
    `projection_store()` share.
    Connection, network, timeout and server faults raise `StoreConnectionError` /
    `StoreAuthenticationError` / `StoreError` (see `faults.translate_faults`), naming `where`.
    """

    def __init__(
        self,
        pool: Any,
        *,
        schema: str = "public",
        table_prefix: str = "sekiban",
        where: str = "PostgreSQL",
        dsn: str | None = None,
    ) -> None:
        self._pool = pool
        self._where = where
        self._tables = t = Tables(schema, table_prefix)
        self._listener = None if dsn is None else AppendListener(dsn, channel_name(t), where)
        self._leases = (
            None if dsn is None else PostgresLeases(dsn, f"{schema}.{table_prefix}", where)
        )
        self._append_sql = append_sql(t)
        self._stream_version_sql = stream_version_sql(t)
        self._read_stream_sql = read_stream_sql(t)
        self._read_envelopes_sql = read_stream_sql(t, columns=ENVELOPE_COLUMNS)
        self._read_command_sql = read_command_sql(t)
        self._snapshot_and_stream_sql = snapshot_and_stream_sql(t)
        self._read_all_sql = read_all_sql(t)
        self._count_after_sql = f"SELECT count(*) FROM {t.events} WHERE position > $1"
        self._read_groups_sql = read_all_sql(t, of_groups=True)
        self._group_sql = group_append_sql(t)
        self._group = PostgresGroupCommit(
            self._append_group,
            self._append_one,
            lambda error: isinstance(error, asyncpg.UniqueViolationError),
        )
        self._read_bound_sql = read_bound_sql(t)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "public",
        table_prefix: str = "sekiban",
        min_size: int = 1,
        max_size: int = 10,
        create_schema: bool = True,
    ) -> PostgresEventStore:
        """Open a pool on `dsn` and, with `create_schema`, create the tables if missing.

        `create_schema` also brings tables made before command ids up to date in place
        (a `command_id` column and its unique index). Without it, a table lacking them
        is refused. Raises `ConfigurationError` for either, and for a schema or prefix
        that is not a plain lowercase identifier (checked before connecting),
        `StoreConnectionError` when the server cannot be reached and
        `StoreAuthenticationError` when it refuses the login.
        """
        tables = Tables(schema, table_prefix)
        where = describe(dsn)
        with translate_faults(where):
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, reset=_keep_session
            )
        try:
            if create_schema:
                with translate_faults(where):
                    async with pool.acquire() as connection, connection.transaction():
                        # Concurrent CREATE ... IF NOT EXISTS can still collide in the
                        # catalogue; processes starting together take turns instead.
                        await connection.execute(
                            "SELECT pg_advisory_xact_lock(hashtext($1))",
                            f"sekiban-ddl:{tables.schema}.{tables.prefix}",
                        )
                        await connection.execute(ddl(tables))
                        await connection.execute(notify_ddl(tables))
            else:
                with translate_faults(where):
                    await _check_command_index(pool, tables)
                    await _check_notify_trigger(pool, tables)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema=schema, table_prefix=table_prefix, where=where, dsn=dsn)

    def snapshot_store(self) -> PostgresSnapshotStore:
        """A snapshot store in the same schema, sharing this store's pool."""
        return PostgresSnapshotStore(
            self._pool,
            schema=self._tables.schema,
            table_prefix=self._tables.prefix,
            where=self._where,
        )

    def projection_store(self) -> PostgresProjectionStore:
        """A projection store in the same schema, sharing this store's pool."""
        return PostgresProjectionStore(
            self._pool,
            schema=self._tables.schema,
            table_prefix=self._tables.prefix,
            where=self._where,
        )

    def reads_snapshots_of(self, snapshot_store: SnapshotStore) -> bool:
        """True for a `PostgresSnapshotStore` on this store's pool, schema and prefix
        (as `snapshot_store()` makes): loads then take one round trip."""
        return (
            isinstance(snapshot_store, PostgresSnapshotStore)
            and snapshot_store._pool is self._pool
            and snapshot_store.snapshots_table == self._tables.snapshots
        )

    async def read_snapshot_and_stream(
        self, partition_keys: PartitionKeys, projector_name: str, batch_size: int
    ) -> tuple[AggregateSnapshot | None, list[StoredEvent]]:
        """The snapshot and the first `batch_size` events from its version (from version
        1 without one), in one statement; see `SnapshotStreamReader`."""
        check_batch_size(batch_size)
        with translate_faults(self._where):
            rows = await self._pool.fetch(
                self._snapshot_and_stream_sql,
                *stream_key(partition_keys),
                projector_name,
                batch_size,
            )
        snapshot = None
        events = []
        for row in rows:
            if row[10] is not None:  # the snapshot's version: its columns are on this row
                snapshot = snapshot_from_columns(partition_keys, projector_name, row[10:])
            if row[0] is not None:
                events.append(stored_event(row, partition_keys))
        return snapshot, events

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        keys = check_append(events, expected_version, MAX_EVENTS_PER_APPEND)
        command_id = check_command_id(command_id)
        stream = stream_key(keys)
        command = Command(
            stream,
            expected_version,
            event_columns(events),
            command_id,
            keys,
        )
        # Alone, or with the appends of other tasks (see `group_commit`); the group's
        # own faults are translated here, once per waiting append.
        with translate_faults(self._where, writing=True):
            inserted = await self._group.append(command)
        if not inserted:
            # Version `expected_version` does not exist (the stream is behind the
            # caller), or another writer took the next one.
            raise ConcurrencyError(keys, expected_version, await self._version(stream))

    async def _append_one(self, command: Command) -> bool:
        """The lone append statement; whether it inserted the command's events."""
        # A connection that cannot be had is a fault before anything was sent.
        with translate_faults(self._where):
            connection = await self._pool.acquire()
        try:
            with translate_faults(self._where, writing=True):
                try:
                    status: str = await connection.execute(
                        self._append_sql,
                        *command.stream,
                        command.expected_version,
                        *command.columns,
                        command.command_id,
                    )
                except asyncpg.UniqueViolationError as error:
                    # (stream, command id), or else (stream, version): the positions of
                    # one transaction are distinct by construction.
                    if error.constraint_name == self._tables.command_index:
                        assert command.command_id is not None
                        raise DuplicateCommandError(command.keys, command.command_id) from None
                    status = "INSERT 0 0"
        finally:
            with translate_faults(self._where):
                await self._pool.release(connection)
        return status.rsplit(" ", 1)[-1] != "0"

    async def _append_group(self, commands: list[Command]) -> list[bool]:
        """The group statement; per command, whether it was inserted. Raises asyncpg's
        `UniqueViolationError` untranslated: the group then falls back to lone appends."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(self._group_sql, *group_arguments(commands))
        return inserted_commands(commands, [row[0] for row in rows])

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        rows = await self._pool.fetch(
            self._read_command_sql, *stream_key(partition_keys), command_id
        )
        return [stored_event(r, partition_keys) for r in rows] or None

    async def _version(self, stream: tuple[str, str, Any]) -> int:
        with translate_faults(self._where):
            version: int = await self._pool.fetchval(self._stream_version_sql, *stream)
        return version

    async def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        sql = self._read_stream_sql
        async for rows in self._stream_rows(partition_keys, after_version, batch_size, sql):
            yield [stored_event(r, partition_keys) for r in rows]

    async def read_stream_decoded(
        self,
        partition_keys: PartitionKeys,
        after_version: int,
        batch_size: int,
        serializer: Serializer,
    ) -> AsyncIterator[Iterator[Event[EventPayload]]]:
        """`read_stream`, decoded lazily by `serializer.row_events` (`DecodingReader`)."""
        check_batch_size(batch_size)
        sql = self._read_envelopes_sql
        async for rows in self._stream_rows(partition_keys, after_version, batch_size, sql):
            yield serializer.row_events(rows, partition_keys)

    async def _stream_rows(
        self, partition_keys: PartitionKeys, after_version: int, batch_size: int, sql: str
    ) -> AsyncIterator[list[Any]]:
        """The stream's rows after `after_version` (first column: the version), in pages
        of `batch_size`."""
        stream = stream_key(partition_keys)
        # Keyset pagination: each batch is its own query, so no connection is held
        # while the caller works between batches.
        while True:
            with translate_faults(self._where):
                rows = await self._pool.fetch(sql, *stream, after_version, batch_size)
            if not rows:
                return
            yield rows
            if len(rows) < batch_size:
                return
            after_version = rows[-1][0]

    async def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        async for batch, _ in self._pages(self._read_all_sql, after_position, batch_size):
            if batch:
                yield batch
            del batch  # before the next page is decoded, or two would be alive

    def read_all_of_groups(
        self,
        groups: Collection[str],
        after_position: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[tuple[list[StoredEvent], int]]:
        """`read_all` keeping only the events of `groups`, filtered by the server (see
        `GroupFilteredReader`): pages with the position each has scanned up to."""
        check_batch_size(batch_size)
        return self._pages(self._read_groups_sql, after_position, batch_size, list(groups))

    async def _pages(
        self, sql: str, after_position: int, batch_size: int, *groups: list[str]
    ) -> AsyncIterator[tuple[list[StoredEvent], int]]:
        streams = StreamKeys(PartitionKeys)
        # One bound for the whole read, taken before any page is read (see the package
        # docstring): each page's snapshot is newer than it.
        with translate_faults(self._where):
            bound = await self._pool.fetchval(self._read_bound_sql)
        while True:
            with translate_faults(self._where):
                rows = await self._pool.fetch(sql, after_position, batch_size, bound, *groups)
            batch = [stored_event(r, streams.get(r[12], r[11], r[10])) for r in rows]
            if len(rows) < batch_size:
                # Every row below the bound has been scanned, whatever its group.
                yield batch, max(after_position, (bound << POSITION_BITS) - 1)
                return
            after_position = rows[-1][9]
            yield batch, after_position
            del batch, rows  # before the next page is decoded, or two would be alive

    async def wait_for_append(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for an append to this store's table, by any
        process (see `EventNotifier`): LISTEN on a connection of its own, opened on the
        first call and reopened after it was lost. Appends notify through a trigger that
        `open(create_schema=True)` adds; a table without it is never notified (callers
        still poll). A store made without a DSN only sleeps and returns False."""
        if self._listener is None:
            await asyncio.sleep(timeout)
            return False
        return await self._listener.wait(timeout)

    async def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (for per-test schemas).

        Refuses to drop `public` with `ConfigurationError`.
        """
        if self._tables.schema == "public":
            raise ConfigurationError("refusing to drop the public schema")
        with translate_faults(self._where):
            await self._pool.execute(f"DROP SCHEMA IF EXISTS {self._tables.quoted_schema} CASCADE")

    async def count_events_after(self, position: int) -> int:
        """Counted by the server on the position index; events held back from `read_all`
        by an append still in flight before them are counted (they are in the store)."""
        with translate_faults(self._where):
            count: int = await self._pool.fetchval(self._count_after_sql, position)
        return count

    async def try_lease(self, name: str) -> Lease | None:
        """The lease on `name` among every process using these tables (see
        `sekiban.stores.leases`): a session advisory lock on a connection of its own,
        ended with the process or the connection."""
        if self._leases is None:
            raise ConfigurationError(
                "leases need a store opened with a DSN (PostgresEventStore.open), not a pool"
            )
        return await self._leases.try_lease(name)

    async def close(self) -> None:
        """Close the pool (also the one the snapshot and projection stores share), the
        listening connection and the lease connection (ending its leases)."""
        if self._listener is not None:
            await self._listener.close()
        if self._leases is not None:
            await self._leases.close()
        with translate_faults(self._where):
            await self._pool.close()


async def _check_command_index(pool: Any, tables: Tables) -> None:
    """Refuse tables the store did not create or update: without the unique index on
    command ids, a resent command could be appended twice."""
    found = await pool.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f'"{tables.schema}"."{tables.command_index}"'
    )
    if not found:
        raise ConfigurationError(
            f"{tables.events} has no unique index {tables.command_index!r} on command ids "
            "(or does not exist): open it once with create_schema=True, which adds the "
            "command_id column and the index in place, or apply the DDL in docs/stores.md"
        )


async def _check_notify_trigger(pool: Any, tables: Tables) -> None:
    """Warn when appends to the table notify no one: everything works, but runners
    only poll, so a projection or reaction learns of an append a poll later."""
    found = await pool.fetchval(
        "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgname = $1 AND tgrelid = $2::regclass)",
        tables.notify_trigger,
        tables.events,
    )
    if not found:
        log.warning(
            "%s has no append-notification trigger %r: projection and reaction runners "
            "will poll instead of waking on appends. Open the store once with "
            "create_schema=True, which adds it, or apply notify_ddl from "
            "sekiban.stores.postgres.notifications (docs/stores.md)",
            tables.events,
            tables.notify_trigger,
        )


async def _keep_session(connection: Any) -> None:
    """Pool reset hook: skip asyncpg's default `RESET ALL; UNLISTEN *; ...` round trip.

    The stores never change session state (no SET, LISTEN, cursors or session advisory
    locks), and asyncpg still rolls back any transaction left open before calling this.
    Without it every operation costs two round trips instead of one.
    """
