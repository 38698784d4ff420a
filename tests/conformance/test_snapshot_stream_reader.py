"""Stores that read a snapshot and the events after it together (`SnapshotStreamReader`:
PostgreSQL and SQLite) return what reading them apart returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sekiban import PartitionKeys
from sekiban.errors import InvalidReadError
from sekiban.stores import EventStore
from sekiban.stores.protocols import SnapshotStreamReader
from tests.conformance.backends import BACKENDS
from tests.conformance.test_snapshot_store import snapshot_at
from tests.support import stored_events

SnapshotStreamReaderStore = Any  # an EventStore that is a SnapshotStreamReader
READERS = ("postgres", "sqlite")


@pytest.fixture(params=READERS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SnapshotStreamReaderStore]:
    async with BACKENDS[request.param](tmp_path) as (events, snapshots):
        assert isinstance(events, SnapshotStreamReader)
        assert events.reads_snapshots_of(snapshots)
        yield events


async def stream_of(store: EventStore, events: int) -> PartitionKeys:
    keys = PartitionKeys.generate("account")
    await store.append(stored_events(keys, 1, events), 0)
    return keys


async def test_without_a_snapshot_the_stream_is_read_from_version_1(
    store: SnapshotStreamReaderStore,
) -> None:
    keys = await stream_of(store, 10)
    snapshot, events = await store.read_snapshot_and_stream(keys, "account", 4)
    assert snapshot is None
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert events == [e async for batch in store.read_stream(keys, 0, 4) for e in batch][:4]


async def test_the_snapshot_comes_with_the_events_from_its_version(
    store: SnapshotStreamReaderStore,
) -> None:
    keys = await stream_of(store, 10)
    other = await stream_of(store, 10)
    snapshots = store.snapshot_store()
    await snapshots.save(snapshot_at(keys, 7))
    await snapshots.save(snapshot_at(other, 3))
    snapshot, events = await store.read_snapshot_and_stream(keys, "account", 1000)
    assert snapshot == await snapshots.get(keys, "account")
    assert [e.version for e in events] == [7, 8, 9, 10]
    assert {e.partition_keys for e in events} == {keys}
    _, first_two = await store.read_snapshot_and_stream(keys, "account", 2)
    assert [e.version for e in first_two] == [7, 8]
    assert await store.read_snapshot_and_stream(keys, "another-projector", 10) == (
        None,
        [e async for batch in store.read_stream(keys, 0, 10) for e in batch],
    )


async def test_a_snapshot_ahead_of_the_stream_comes_alone(store: SnapshotStreamReaderStore) -> None:
    keys = await stream_of(store, 10)
    await store.snapshot_store().save(snapshot_at(keys, 50))
    snapshot, events = await store.read_snapshot_and_stream(keys, "account", 1000)
    assert snapshot is not None and snapshot.version == 50
    assert events == []


async def test_a_batch_size_below_one_event_is_refused(store: SnapshotStreamReaderStore) -> None:
    keys = await stream_of(store, 3)
    with pytest.raises(InvalidReadError, match="batch_size"):
        await store.read_snapshot_and_stream(keys, "account", 0)
