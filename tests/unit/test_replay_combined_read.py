"""Loads through a `SnapshotStreamReader` (snapshot and delta in one request) give what
separate reads give, with the same checks on the snapshot."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sekiban import PartitionKeys, StoredEvent
from sekiban.loading import EventReplayOptimizer, LoadResult
from sekiban.snapshot import AggregateSnapshot, RejectionReason
from sekiban.stores import InMemoryEventStore, InMemorySnapshotStore, SnapshotStore
from sekiban.stores.protocols import SnapshotStreamReader
from tests.unit.test_loading import PROJECTOR, SERIALIZER, account_with, snapshot_at


class CombinedReads(InMemoryEventStore):
    """The events of `events`, read together with the snapshots of `snapshots`;
    counts both kinds of reads."""

    def __init__(self, events: InMemoryEventStore, snapshots: InMemorySnapshotStore) -> None:
        super().__init__()
        self._streams, self._all = events._streams, events._all
        self.snapshots = snapshots
        self.combined_reads = 0
        self.stream_reads = 0

    def reads_snapshots_of(self, snapshot_store: SnapshotStore) -> bool:
        return snapshot_store is self.snapshots

    async def read_snapshot_and_stream(
        self, partition_keys: PartitionKeys, projector_name: str, batch_size: int
    ) -> tuple[AggregateSnapshot | None, list[StoredEvent]]:
        self.combined_reads += 1
        snapshot = await self.snapshots.get(partition_keys, projector_name)
        start = max(snapshot.version, 1) if snapshot else 1
        stream = self._streams.get(partition_keys, [])
        return snapshot, stream[start - 1 : start - 1 + batch_size]

    def read_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[list[StoredEvent]]:
        self.stream_reads += 1
        return super().read_stream(*args, **kwargs)


async def load_both(
    events: int,
    snapshot_version: int | None,
    *,
    batch_size: int = 1000,
    change: dict[str, Any] | None = None,
) -> tuple[CombinedReads, LoadResult, LoadResult]:
    """An account of `events` events (snapshotted at `snapshot_version`, then `change`d),
    loaded with combined reads and with separate reads."""
    store, keys = await account_with(events)
    snapshots = InMemorySnapshotStore()
    if snapshot_version is not None:
        snapshot = await snapshot_at(store, keys, snapshot_version)
        await snapshots.save(dataclasses.replace(snapshot, **(change or {})))
    combined = CombinedReads(store, snapshots)
    together = await EventReplayOptimizer(
        combined, SERIALIZER, snapshots, batch_size=batch_size
    ).load(PROJECTOR, keys)
    apart = await EventReplayOptimizer(store, SERIALIZER, snapshots, batch_size=batch_size).load(
        PROJECTOR, keys
    )
    return combined, together, apart


async def test_snapshot_and_delta_come_in_one_read() -> None:
    combined, together, apart = await load_both(30, 25)
    assert together.aggregate == apart.aggregate
    assert together.statistics.from_snapshot and together.statistics.events_replayed == 5
    assert (combined.combined_reads, combined.stream_reads) == (1, 0)


async def test_without_a_snapshot_the_first_batch_starts_the_replay() -> None:
    combined, together, apart = await load_both(12, None, batch_size=5)
    assert together.aggregate == apart.aggregate
    assert together.statistics.events_replayed == 12 and not together.statistics.from_snapshot
    assert (combined.combined_reads, combined.stream_reads) == (1, 1)  # then batches 2, 3


async def test_a_delta_longer_than_a_batch_is_read_on() -> None:
    combined, together, apart = await load_both(40, 10, batch_size=8)
    assert together.aggregate == apart.aggregate
    assert together.statistics.from_snapshot and together.statistics.events_replayed == 30
    assert (combined.combined_reads, combined.stream_reads) == (1, 1)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 35}, RejectionReason.AHEAD_OF_STREAM),
        ({"last_sortable_unique_id": "0" * 30}, RejectionReason.STREAM_MISMATCH),
    ],
)
async def test_bad_snapshots_are_discarded_as_with_separate_reads(
    change: dict[str, Any], reason: RejectionReason
) -> None:
    _, together, apart = await load_both(20, 10, change=change)
    assert together.aggregate == apart.aggregate
    assert together.statistics.rejection is not None
    assert together.statistics.rejection.reason is reason
    assert not together.statistics.from_snapshot and together.statistics.events_replayed == 20


async def test_a_failing_combined_read_falls_back_to_separate_reads() -> None:
    store, keys = await account_with(20)
    snapshots = InMemorySnapshotStore()
    await snapshots.save(await snapshot_at(store, keys, 15))
    combined = CombinedReads(store, snapshots)

    async def broken(*args: object) -> object:
        raise OSError("connection reset")

    combined.read_snapshot_and_stream = broken  # type: ignore[method-assign]
    result = await EventReplayOptimizer(combined, SERIALIZER, snapshots).load(PROJECTOR, keys)
    assert result.statistics.from_snapshot and result.statistics.events_replayed == 5
    assert result.aggregate.version == 20 and combined.stream_reads == 1


def test_only_a_store_that_reads_the_snapshot_store_reads_together() -> None:
    events, snapshots = InMemoryEventStore(), InMemorySnapshotStore()
    combined = CombinedReads(events, snapshots)
    assert isinstance(combined, SnapshotStreamReader)
    assert EventReplayOptimizer(combined, SERIALIZER, snapshots)._reader is combined
    assert EventReplayOptimizer(combined, SERIALIZER, InMemorySnapshotStore())._reader is None
    assert EventReplayOptimizer(combined, SERIALIZER)._reader is None
    assert EventReplayOptimizer(events, SERIALIZER, snapshots)._reader is None
