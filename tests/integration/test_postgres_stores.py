"""PostgreSQL-specific behaviour of the stores, beyond what the conformance suite checks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from sekiban import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateCommandError,
    PartitionKeys,
    StoredEvent,
)
from sekiban.errors import SnapshotRejectedError
from sekiban.snapshot import RejectionReason
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.test_snapshot_store import assert_signed_snapshots_round_trip, snapshot_at
from tests.support import stored_events

pytestmark = pytest.mark.postgres


async def read_stream(store: PostgresEventStore, keys: PartitionKeys) -> list[StoredEvent]:
    return [e async for batch in store.read_stream(keys) for e in batch]


@pytest.mark.parametrize(
    ("schema", "prefix"),
    [
        ("Public", "sekiban"),
        ("1st", "sekiban"),
        ("s", 'x"; DROP TABLE users; --'),
        ("s", ""),
        ("s" * 49, "sekiban"),
        ("s", "events-v2"),
    ],
)
async def test_invalid_names_are_rejected_before_connecting(schema: str, prefix: str) -> None:
    with pytest.raises(ConfigurationError, match=r"\[a-z_\]"):
        await PostgresEventStore.open(
            "postgresql://nobody@127.0.0.1:1/none", schema=schema, table_prefix=prefix
        )


async def test_public_schema_is_never_dropped() -> None:
    store = PostgresEventStore(pool=None, schema="public")
    with pytest.raises(ConfigurationError, match="public"):
        await store.drop_schema()


async def test_connecting_concurrently_to_a_new_schema_creates_it_once(
    dsn: str, schema: str
) -> None:
    stores = await asyncio.gather(
        *(PostgresEventStore.open(dsn, schema=schema, max_size=1) for _ in range(4))
    )
    try:
        keys = PartitionKeys.generate()
        await stores[0].append(stored_events(keys, 1, 1), 0)
        assert len(await read_stream(stores[3], keys)) == 1
    finally:
        await stores[0].drop_schema()
        for store in stores:
            await store.close()


async def test_table_prefixes_keep_stores_in_one_schema_apart(
    store: PostgresEventStore, dsn: str, schema: str
) -> None:
    other = await PostgresEventStore.open(dsn, schema=schema, table_prefix="other")
    try:
        keys = PartitionKeys.generate()
        await store.append(stored_events(keys, 1, 2), 0)
        assert await read_stream(other, keys) == []
        await other.append(stored_events(keys, 1, 1), 0)
        assert len(await read_stream(store, keys)) == 2
    finally:
        await other.close()


async def test_concurrency_error_reports_the_stream_version(store: PostgresEventStore) -> None:
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 2), 0)
    with pytest.raises(ConcurrencyError) as stale:
        await store.append(stored_events(keys, 2, 1), 1)
    assert (stale.value.expected_version, stale.value.actual_version) == (1, 2)
    with pytest.raises(ConcurrencyError) as ahead:
        await store.append(stored_events(keys, 5, 1), 4)
    assert (ahead.value.expected_version, ahead.value.actual_version) == (4, 2)


async def test_a_table_from_before_command_ids_is_updated_in_place_or_refused(
    store: PostgresEventStore, dsn: str, schema: str
) -> None:
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 2), 0)
    connection = await asyncpg.connect(dsn)
    try:  # back to the layout before command ids
        await connection.execute(
            f'DROP INDEX "{schema}".sekiban_events_command; '
            f'ALTER TABLE "{schema}".sekiban_events DROP COLUMN command_id'
        )
    finally:
        await connection.close()

    with pytest.raises(ConfigurationError, match="create_schema=True"):
        await PostgresEventStore.open(dsn, schema=schema, create_schema=False)
    updated = await PostgresEventStore.open(dsn, schema=schema)
    try:
        await updated.append(stored_events(keys, 3, 1), 2, command_id="c")
        with pytest.raises(DuplicateCommandError):
            await updated.append(stored_events(keys, 4, 1), 3, command_id="c")
        assert [e.version for e in await read_stream(updated, keys)] == [1, 2, 3]
        assert [e.version for e in await updated.read_command(keys, "c") or []] == [3]
        again = await PostgresEventStore.open(dsn, schema=schema, create_schema=False)
        await again.close()
    finally:
        await updated.close()


async def test_opening_a_table_without_the_notify_trigger_says_runners_will_only_poll(
    store: PostgresEventStore, dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "sekiban.stores.postgres"):
        quiet = await PostgresEventStore.open(dsn, schema=schema, create_schema=False)
        await quiet.close()
    assert "notify" not in caplog.text.lower()

    connection = await asyncpg.connect(dsn)
    try:  # tables made by hand, or by a version before notifications
        await connection.execute(f'DROP TRIGGER sekiban_events_notify ON "{schema}".sekiban_events')
    finally:
        await connection.close()
    with caplog.at_level(logging.WARNING, "sekiban.stores.postgres"):
        polling = await PostgresEventStore.open(dsn, schema=schema, create_schema=False)
        await polling.close()
    assert "sekiban_events_notify" in caplog.text and "poll" in caplog.text
    restored = await PostgresEventStore.open(dsn, schema=schema)  # create_schema adds it
    await restored.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "sekiban.stores.postgres"):
        again = await PostgresEventStore.open(dsn, schema=schema, create_schema=False)
        await again.close()
    assert "notify" not in caplog.text.lower()


async def test_timestamps_keep_microseconds_and_the_instant(store: PostgresEventStore) -> None:
    keys = PartitionKeys.generate()
    tokyo = timezone(timedelta(hours=9))
    moments = [
        datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=tokyo),
    ]
    events = [
        dataclasses.replace(e, timestamp=t)
        for e, t in zip(stored_events(keys, 1, 2), moments, strict=True)
    ]
    await store.append(events, 0)
    back = [e.timestamp for e in await read_stream(store, keys)]
    assert back == moments
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in back)


async def test_snapshot_at_the_same_version_replaces_the_stored_one(
    store: PostgresEventStore,
) -> None:
    snapshots = store.snapshot_store()
    keys = PartitionKeys.generate("account")
    await snapshots.save(snapshot_at(keys, 5))
    again = snapshot_at(keys, 5, compress_above=0)
    assert await snapshots.save(again)
    assert await snapshots.get(keys, "account") == again


async def test_unreadable_snapshot_row_is_rejected_as_corrupt(
    store: PostgresEventStore, dsn: str, schema: str
) -> None:
    snapshots = store.snapshot_store()
    keys = PartitionKeys.generate("account")
    await snapshots.save(snapshot_at(keys, 5))
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"UPDATE \"{schema}\".sekiban_snapshots SET encoding = 'rot13'")
    finally:
        await connection.close()
    with pytest.raises(SnapshotRejectedError) as error:
        await snapshots.get(keys, "account")
    assert error.value.rejection.reason is RejectionReason.CORRUPT


async def test_a_snapshot_table_from_before_signing_gains_the_signature_column(
    store: PostgresEventStore, dsn: str, schema: str
) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'ALTER TABLE "{schema}".sekiban_snapshots DROP COLUMN signature')
    finally:
        await connection.close()
    reopened = await PostgresEventStore.open(dsn, schema=schema)
    try:
        await assert_signed_snapshots_round_trip(reopened.snapshot_store())
    finally:
        await reopened.close()
