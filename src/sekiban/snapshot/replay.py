"""Loading an aggregate: snapshot, then only the events after it, else full replay."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.errors import EventStreamCorruptError
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.serialization import Serializer
from sekiban.snapshot.types import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotRejectedError,
    SnapshotRejection,
    restore_snapshot,
)
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, EventStore, SnapshotStore

log = logging.getLogger("sekiban.snapshot")


@dataclass(frozen=True, slots=True)
class LoadStatistics:
    """How a load went: whether a snapshot served it and how many events were replayed.

    `snapshot_version` and `snapshot_taken_at` describe the snapshot used (0 and None
    when the aggregate was replayed in full); `rejection` says why a stored snapshot
    was discarded.
    """

    from_snapshot: bool
    events_replayed: int
    duration_ms: float
    snapshot_version: int = 0
    snapshot_taken_at: datetime | None = None
    rejection: SnapshotRejection | None = None


@dataclass(slots=True)
class SnapshotCounters:
    """What happened to snapshots in this process: taken, failed to save, discarded."""

    taken: int = 0
    failed: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class LoadResult:
    aggregate: Aggregate[AggregatePayload]
    statistics: LoadStatistics


class EventReplayOptimizer:
    """Builds aggregates from the newest usable snapshot plus the events after it.

    A snapshot is used only if it is compatible with the projector and its last event
    is still in the stream at its version with the same sortable id; the delta must then
    continue at consecutive versions. Any mismatch discards the snapshot (logged and
    reported in `LoadStatistics.rejection`) and the aggregate is replayed in full.
    """

    def __init__(
        self,
        event_store: EventStore,
        serializer: Serializer,
        snapshot_store: SnapshotStore | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        timer: Callable[[], float] = time.perf_counter,
        counters: SnapshotCounters | None = None,
    ) -> None:
        self.event_store = event_store
        self.serializer = serializer
        self.snapshot_store = snapshot_store
        self.batch_size = batch_size
        self.timer = timer
        self.counters = counters or SnapshotCounters()

    async def load(
        self, projector: AggregateProjector, partition_keys: PartitionKeys
    ) -> LoadResult:
        started = self.timer()
        snapshot, rejection = await self._read_snapshot(projector, partition_keys)
        if snapshot is not None:
            try:
                aggregate = restore_snapshot(snapshot, projector, self.serializer)
                aggregate, replayed = await self._replay_after_snapshot(projector, aggregate)
            except SnapshotRejectedError as error:
                rejection = error.rejection
            else:
                return LoadResult(
                    aggregate,
                    LoadStatistics(
                        True,
                        replayed,
                        (self.timer() - started) * 1000,
                        snapshot.version,
                        snapshot.metadata.taken_at,
                    ),
                )
        if rejection is not None:
            self.counters.rejected += 1
            log.warning("snapshot of %s discarded: %s", partition_keys, rejection)
        aggregate, replayed = await self.catch_up(
            projector, projector.empty_aggregate(partition_keys)
        )
        stats = LoadStatistics(
            False, replayed, (self.timer() - started) * 1000, rejection=rejection
        )
        return LoadResult(aggregate, stats)

    async def catch_up(
        self, projector: AggregateProjector, aggregate: Aggregate[AggregatePayload]
    ) -> tuple[Aggregate[AggregatePayload], int]:
        """`aggregate` advanced by every stored event after its version, and their count."""
        start = aggregate.version
        to_event = self.serializer.to_event
        async for batch in self.event_store.read_stream(
            aggregate.partition_keys, start, self.batch_size
        ):
            aggregate = projector.fold(aggregate, map(to_event, batch))
        return aggregate, aggregate.version - start

    async def _read_snapshot(
        self, projector: AggregateProjector, partition_keys: PartitionKeys
    ) -> tuple[AggregateSnapshot | None, SnapshotRejection | None]:
        if self.snapshot_store is None:
            return None, None
        try:
            return await self.snapshot_store.get(partition_keys, projector.name), None
        except SnapshotRejectedError as error:
            return None, error.rejection
        except Exception as error:
            detail = f"snapshot store failed: {type(error).__name__}: {error}"
            return None, SnapshotRejection(RejectionReason.UNREADABLE, detail)

    async def _replay_after_snapshot(
        self, projector: AggregateProjector, aggregate: Aggregate[AggregatePayload]
    ) -> tuple[Aggregate[AggregatePayload], int]:
        # Read from the snapshot's own version: its last event must still be there with
        # the same id, which proves the snapshot belongs to this stream and is not ahead.
        anchor_version = aggregate.version
        to_event = self.serializer.to_event
        anchored = False
        try:
            async for batch in self.event_store.read_stream(
                aggregate.partition_keys, anchor_version - 1, self.batch_size
            ):
                if not anchored:
                    anchor = batch[0]
                    if (
                        anchor.version != anchor_version
                        or anchor.sortable_unique_id != aggregate.last_sortable_unique_id
                    ):
                        _mismatch(f"event {anchor_version} of the stream is not the snapshot's")
                    anchored, batch = True, batch[1:]
                aggregate = projector.fold(aggregate, map(to_event, batch))
        except EventStreamCorruptError as error:
            _mismatch(str(error))
        if not anchored:
            raise SnapshotRejectedError(
                SnapshotRejection(
                    RejectionReason.AHEAD_OF_STREAM,
                    f"snapshot at version {anchor_version} but the stream is shorter",
                )
            )
        return aggregate, aggregate.version - anchor_version


def _mismatch(detail: str) -> NoReturn:
    raise SnapshotRejectedError(SnapshotRejection(RejectionReason.STREAM_MISMATCH, detail))
