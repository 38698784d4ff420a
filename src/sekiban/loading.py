"""Loading an aggregate: snapshot, then only the events after it, else full replay."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sekiban import telemetry
from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import EventStreamCorruptError, SnapshotRejectedError
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.snapshot.types import (
    DEFAULT_MAX_SNAPSHOT_BYTES,
    AggregateSnapshot,
    RejectionReason,
    SnapshotRejection,
    restore_snapshot,
)
from sekiban.stores.protocols import (
    DEFAULT_BATCH_SIZE,
    DecodingReader,
    EventStore,
    SnapshotStore,
    SnapshotStreamReader,
    check_batch_size,
)

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
    duration: timedelta
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

    When the event store is a `SnapshotStreamReader` of the snapshot store, the snapshot
    and the first batch of events after it are read in one request (one round trip on
    PostgreSQL), with the same checks.

    With `signing`, a snapshot without a valid signature by an accepted key is
    discarded like a corrupt one; a payload inflating beyond `max_snapshot_bytes` is
    discarded while inflating.
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
        signing: SnapshotSigning | None = None,
        max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
    ) -> None:
        self.event_store = event_store
        self.serializer = serializer
        self.snapshot_store = snapshot_store
        self.batch_size = check_batch_size(batch_size)
        self.timer = timer
        self.counters = counters or SnapshotCounters()
        self.signing = signing
        self.max_snapshot_bytes = max_snapshot_bytes
        self._reader = (
            event_store
            if snapshot_store is not None
            and isinstance(event_store, SnapshotStreamReader)
            and event_store.reads_snapshots_of(snapshot_store)
            else None
        )
        self._decoder = event_store if isinstance(event_store, DecodingReader) else None

    async def load(
        self, projector: AggregateProjector, partition_keys: PartitionKeys
    ) -> LoadResult:
        with telemetry.load(projector.name, projector.version, partition_keys) as span:
            result = await self._load(projector, partition_keys)
            telemetry.loaded(span, projector.name, result.statistics)
            return result

    async def _load(
        self, projector: AggregateProjector, partition_keys: PartitionKeys
    ) -> LoadResult:
        started = self.timer()
        head: list[StoredEvent] | None = None  # the events read with the snapshot, if any
        if self._reader is not None:
            snapshot, head, rejection = await self._read_together(projector, partition_keys)
        else:
            snapshot, rejection = await self._read_snapshot(projector, partition_keys)
        if snapshot is not None:
            try:
                aggregate = restore_snapshot(
                    snapshot,
                    projector,
                    self.serializer,
                    signing=self.signing,
                    max_bytes=self.max_snapshot_bytes,
                )
                aggregate, replayed = await self._replay_after_snapshot(projector, aggregate, head)
            except SnapshotRejectedError as error:
                rejection = error.rejection
            else:
                return LoadResult(
                    aggregate,
                    LoadStatistics(
                        True,
                        replayed,
                        timedelta(seconds=self.timer() - started),
                        snapshot.version,
                        snapshot.metadata.taken_at,
                    ),
                )
        if rejection is not None:
            self.counters.rejected += 1
            log.warning("snapshot of %s discarded: %s", partition_keys, rejection)
        # `head` starts at version 1 only when no snapshot was found.
        aggregate, replayed = await self._fold_stream(
            projector,
            projector.empty_aggregate(partition_keys),
            head if snapshot is None and rejection is None else None,
        )
        stats = LoadStatistics(
            False, replayed, timedelta(seconds=self.timer() - started), rejection=rejection
        )
        return LoadResult(aggregate, stats)

    async def catch_up(
        self,
        projector: AggregateProjector,
        aggregate: Aggregate[AggregatePayload],
        causation_id: str = "",
    ) -> tuple[Aggregate[AggregatePayload], list[Event[EventPayload]]]:
        """`aggregate` advanced by every stored event after its version, and those of
        the new events whose causation id is `causation_id` (none for "")."""
        caused: list[Event[EventPayload]] = []
        with telemetry.span(
            "sekiban.catch_up", {"sekiban.aggregate.projector": projector.name}
        ) as span:
            aggregate, replayed = await self._fold_stream(
                projector, aggregate, None, causation_id, caused
            )
            span.set_attribute("sekiban.events.replayed", replayed)
        return aggregate, caused

    async def _fold_stream(
        self,
        projector: AggregateProjector,
        aggregate: Aggregate[AggregatePayload],
        head: list[StoredEvent] | None,
        causation_id: str = "",
        caused: list[Event[EventPayload]] | None = None,
    ) -> tuple[Aggregate[AggregatePayload], int]:
        start = aggregate.version
        async for batch in self._decoded(aggregate.partition_keys, start, head):
            if causation_id and caused is not None:
                batch = _noting(batch, causation_id, caused)
            aggregate = projector.fold(aggregate, batch)
        return aggregate, aggregate.version - start

    async def _decoded(
        self, partition_keys: PartitionKeys, after_version: int, head: list[StoredEvent] | None
    ) -> AsyncIterator[Iterator[Event[EventPayload]]]:
        """`_stream`'s batches decoded as the fold takes each event (decoding a batch
        first keeps it alive for the garbage collector to scan): by the store when it
        is a `DecodingReader` (after `head`), else by `Serializer.to_event`."""
        to_event = self.serializer.to_event
        if self._decoder is None:
            async for batch in self._stream(partition_keys, after_version, head):
                yield map(to_event, batch)
            return
        if head is not None:
            if head:
                yield map(to_event, head)
            if len(head) < self.batch_size:
                return
            after_version = head[-1].version
        async for page in self._decoder.read_stream_decoded(
            partition_keys, after_version, self.batch_size, self.serializer
        ):
            yield page

    async def _stream(
        self, partition_keys: PartitionKeys, after_version: int, head: list[StoredEvent] | None
    ) -> AsyncIterator[list[StoredEvent]]:
        """The stream after `after_version` in batches; `head`, when given, is its first
        batch, already read (it may start earlier: the callers check versions)."""
        if head is not None:
            if head:
                yield head
            if len(head) < self.batch_size:
                return
            after_version = head[-1].version
        async for batch in self.event_store.read_stream(
            partition_keys, after_version, self.batch_size
        ):
            yield batch

    async def _read_together(
        self, projector: AggregateProjector, partition_keys: PartitionKeys
    ) -> tuple[AggregateSnapshot | None, list[StoredEvent] | None, SnapshotRejection | None]:
        assert self._reader is not None
        try:
            snapshot, head = await self._reader.read_snapshot_and_stream(
                partition_keys, projector.name, self.batch_size
            )
        except SnapshotRejectedError as error:
            return None, None, error.rejection
        except Exception:
            # Read them apart: a failing snapshot store is then reported as always, and
            # an event store failure raises from the replay.
            snapshot, rejection = await self._read_snapshot(projector, partition_keys)
            return snapshot, None, rejection
        return snapshot, head, None

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
        self,
        projector: AggregateProjector,
        aggregate: Aggregate[AggregatePayload],
        head: list[StoredEvent] | None,
    ) -> tuple[Aggregate[AggregatePayload], int]:
        # Read from the snapshot's own version: its last event must still be there with
        # the same id, which proves the snapshot belongs to this stream and is not ahead.
        anchor_version = aggregate.version
        to_event = self.serializer.to_event
        anchored = False
        try:
            async for batch in self._stream(aggregate.partition_keys, anchor_version - 1, head):
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


def _noting(
    events: Iterator[Event[EventPayload]], causation_id: str, caused: list[Event[EventPayload]]
) -> Iterator[Event[EventPayload]]:
    """`events`, noting in `caused` those whose causation id is `causation_id`."""
    for event in events:
        if event.metadata.causation_id == causation_id:
            caused.append(event)
        yield event


def _mismatch(detail: str) -> NoReturn:
    raise SnapshotRejectedError(SnapshotRejection(RejectionReason.STREAM_MISMATCH, detail))
