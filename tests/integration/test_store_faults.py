"""Connection faults on the SQL stores, injected for real: a TCP proxy between the
PostgreSQL store and its server that the test cuts, wrong passwords, closed ports, a
second SQLite connection holding the write lock, a file that cannot be written.

Each fault is a `StoreConnectionError` (or subclass) with the driver's error as its
cause and `outcome_unknown` saying whether the append may have landed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sekiban import (
    PartitionKeys,
    StoreAuthenticationError,
    StoreBusyError,
    StoreConnectionError,
)
from sekiban.stores.postgres import PostgresEventStore
from sekiban.stores.sqlite import SqliteEventStore
from tests.conformance.backends import require_env
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.support import free_port, stored_events

DRIVER_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def dsn_with(
    dsn: str, *, port: int | None = None, user: str | None = None, password: str | None = None
) -> str:
    parts = urlsplit(dsn)
    user = user if user is not None else parts.username or ""
    secret = password if password is not None else parts.password or ""
    netloc = f"{user}:{secret}@{parts.hostname}:{port or parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def events_of(store: PostgresEventStore | SqliteEventStore, keys: PartitionKeys) -> list[int]:
    return [e.version async for batch in store.read_stream(keys) for e in batch]


# --- PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
async def direct() -> AsyncIterator[PostgresEventStore]:
    """A store straight on the server, in a fresh schema."""
    store = await PostgresEventStore.open(
        require_env("SEKIBAN_POSTGRES_DSN"), schema=f"t_{uuid.uuid4().hex[:12]}"
    )
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


@pytest.fixture
async def proxied(
    direct: PostgresEventStore,
) -> AsyncIterator[tuple[PostgresEventStore, FaultProxy]]:
    """A store on the same schema, reaching the server through a `FaultProxy`."""
    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    parts = urlsplit(dsn)
    async with fault_proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        store = await PostgresEventStore.open(
            dsn_with(dsn, port=proxy.port),
            schema=direct._tables.schema,
            create_schema=False,
            max_size=2,
        )
        try:
            yield store, proxy
        finally:
            proxy.restore()
            await store.close()


async def test_cut_before_a_read_is_a_connection_error_with_a_known_outcome(
    proxied: tuple[PostgresEventStore, FaultProxy],
) -> None:
    store, proxy = proxied
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 2), 0)
    proxy.cut()
    with pytest.raises(StoreConnectionError) as error:
        await events_of(store, keys)
    assert error.value.outcome_unknown is False
    assert isinstance(error.value.__cause__, DRIVER_ERRORS)
    assert "sekiban:sekiban" not in str(error.value)  # names the server, not the login
    with pytest.raises(StoreConnectionError) as append_error:  # refused before sending
        await store.append(stored_events(keys, 3, 1), 2)
    assert append_error.value.outcome_unknown is False
    proxy.restore()
    assert await events_of(store, keys) == [1, 2]  # the pool reconnects afterwards


async def test_cut_after_the_append_was_sent_leaves_the_outcome_unknown(
    proxied: tuple[PostgresEventStore, FaultProxy], direct: PostgresEventStore
) -> None:
    store, proxy = proxied
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 1), 0)
    proxy.lose_reply(b"INSERT 0 ")  # the server's answer to the append
    with pytest.raises(StoreConnectionError) as error:
        await store.append(stored_events(keys, 2, 2), 1)
    assert error.value.outcome_unknown is True
    assert isinstance(error.value.__cause__, DRIVER_ERRORS)
    assert proxy.replies_lost == 1
    assert await events_of(direct, keys) == [1, 2, 3]  # it had landed: only the reply was lost


async def test_refused_login_is_an_authentication_error() -> None:
    """A login the server refuses (SQLSTATE class 28). The local server trusts
    127.0.0.1 and so takes any password for a real user; a user it does not know is
    refused the same way as a wrong password is on a server that checks them."""
    dsn = dsn_with(
        require_env("SEKIBAN_POSTGRES_DSN"), user="no_such_user", password="not-the-password"
    )
    with pytest.raises(StoreAuthenticationError) as error:
        await PostgresEventStore.open(dsn, create_schema=False)
    assert error.value.outcome_unknown is False
    assert isinstance(error.value.__cause__, asyncpg.InvalidAuthorizationSpecificationError)
    assert "not-the-password" not in str(error.value)


async def test_closed_port_is_a_connection_error() -> None:
    port = free_port()
    dsn = dsn_with(require_env("SEKIBAN_POSTGRES_DSN"), port=port)
    with pytest.raises(StoreConnectionError) as error:
        await PostgresEventStore.open(dsn)
    assert not isinstance(error.value, StoreAuthenticationError)
    assert error.value.outcome_unknown is False and f"127.0.0.1:{port}" in str(error.value)
    assert isinstance(error.value.__cause__, OSError)


async def test_statement_timeout_is_a_connection_error_with_a_known_outcome(
    direct: PostgresEventStore,
) -> None:
    """The server cancels the append (its `statement_timeout`): nothing was written."""
    keys = PartitionKeys.generate()
    await direct.append(stored_events(keys, 1, 1), 0)
    async with direct._pool.acquire() as blocker, blocker.transaction():
        # Hold version 2's key so the append waits on it, and let the server cancel it.
        await blocker.execute(f"LOCK TABLE {direct._tables.events} IN EXCLUSIVE MODE")
        dsn = require_env("SEKIBAN_POSTGRES_DSN")
        timed = await PostgresEventStore.open(
            dsn + "?options=-c%20statement_timeout%3D200",
            schema=direct._tables.schema,
            create_schema=False,
        )
        try:
            with pytest.raises(StoreConnectionError) as error:
                await timed.append(stored_events(keys, 2, 1), 1)
        finally:
            await timed.close()
    assert error.value.outcome_unknown is False
    assert isinstance(error.value.__cause__, asyncpg.QueryCanceledError)
    assert await events_of(direct, keys) == [1]


# --- SQLite -------------------------------------------------------------------------


async def test_sqlite_lock_held_past_busy_timeout_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path, busy_timeout=timedelta(milliseconds=200))
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 1), 0)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusyError) as error:
            await store.append(stored_events(keys, 2, 1), 1)
        assert error.value.outcome_unknown is False
        assert isinstance(error.value.__cause__, sqlite3.OperationalError)
        with pytest.raises(StoreBusyError):
            await store.snapshot_store().delete(keys, "account")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await store.append(stored_events(keys, 2, 1), 1)  # the lock is free again
    assert await events_of(store, keys) == [1, 2]
    await store.close()


async def test_sqlite_waits_for_a_lock_released_within_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path, busy_timeout=timedelta(seconds=30))
    keys = PartitionKeys.generate()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    append = asyncio.create_task(store.append(stored_events(keys, 1, 1), 0))
    await asyncio.sleep(0.2)
    assert not append.done()  # waiting for the lock, not failed
    holder.execute("ROLLBACK")
    holder.close()
    await append
    assert await events_of(store, keys) == [1]
    await store.close()


async def test_sqlite_file_that_cannot_be_opened_is_a_connection_error(tmp_path: Path) -> None:
    with pytest.raises(StoreConnectionError) as error:
        await SqliteEventStore.open(tmp_path / "missing-directory" / "events.db")
    assert error.value.outcome_unknown is False
    assert isinstance(error.value.__cause__, sqlite3.Error)


async def test_sqlite_read_only_file_is_a_connection_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    await store.close()
    store = await SqliteEventStore.open(f"file:{path}?mode=ro")
    try:
        with pytest.raises(StoreConnectionError) as error:
            await store.append(stored_events(PartitionKeys.generate(), 1, 1), 0)
        assert error.value.outcome_unknown is False
        assert isinstance(error.value.__cause__, sqlite3.Error)
    finally:
        await store.close()


async def test_a_lease_whose_connection_is_cut_or_stalls_is_lost_and_taken_again(
    proxied: tuple[PostgresEventStore, FaultProxy],
) -> None:
    store, proxy = proxied
    lease = await store.try_lease("projection:partitioned")
    assert lease is not None and await lease.held()

    proxy.cut()  # the connection breaks: the server ends the session and its locks
    await asyncio.sleep(0.6)  # past the half second a good check is trusted for
    assert not await lease.held()
    proxy.restore()
    again = await store.try_lease("projection:partitioned")
    assert again is not None and await again.held()

    proxy.stall()  # no error, no answer: after its timeout the check gives up on it
    await asyncio.sleep(0.6)  # past the half second a good check is trusted for
    assert not await again.held()
    proxy.restore()
