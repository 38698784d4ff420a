"""In-memory event and snapshot stores (and the projection store beside them): for
tests, demos and single-process use."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent
from sekiban.errors import ConcurrencyError, DuplicateCommandError
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.leases import Lease, LocalLeases
from sekiban.stores.protocols import (
    DEFAULT_BATCH_SIZE,
    ClosesOnExit,
    check_append,
    check_batch_size,
    check_command_id,
)

if TYPE_CHECKING:
    from sekiban.projections.store import InMemoryProjectionStore


class InMemoryEventStore(ClosesOnExit):
    """Events in process memory. Appends are atomic and checked under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[PartitionKeys, list[StoredEvent]] = {}
        self._all: list[StoredEvent] = []
        # Per stream: command id -> the versions (first, last) of its commit.
        self._commands: dict[PartitionKeys, dict[str, tuple[int, int]]] = {}
        self._projections: InMemoryProjectionStore | None = None
        self._leases = LocalLeases()

    def projection_store(self) -> InMemoryProjectionStore:
        """The projection store beside these events: the same one on every call, so
        executors on this event store share persisted states, as with a database."""
        if self._projections is None:
            # Imported here: the projections package itself imports the stores.
            from sekiban.projections.store import InMemoryProjectionStore

            self._projections = InMemoryProjectionStore()
        return self._projections

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        keys = check_append(events, expected_version)
        command_id = check_command_id(command_id)
        with self._lock:
            stream = self._streams.setdefault(keys, [])
            commands = self._commands.setdefault(keys, {})
            if command_id is not None and command_id in commands:
                raise DuplicateCommandError(keys, command_id)
            if len(stream) != expected_version:
                raise ConcurrencyError(keys, expected_version, len(stream))
            start = len(self._all)
            stored = [dataclasses.replace(e, position=start + i) for i, e in enumerate(events, 1)]
            stream.extend(stored)
            self._all.extend(stored)
            if command_id is not None:
                commands[command_id] = (expected_version + 1, expected_version + len(events))

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        versions = self._commands.get(partition_keys, {}).get(command_id)
        if versions is None:
            return None
        return self._streams[partition_keys][versions[0] - 1 : versions[1]]

    async def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        stream = self._streams.get(partition_keys, [])
        # Versions are 1..n, so version v sits at index v - 1.
        for start in range(max(after_version, 0), len(stream), batch_size):
            yield stream[start : start + batch_size]

    async def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        # Positions are 1..n, so position p sits at index p - 1.
        for start in range(max(after_position, 0), len(self._all), batch_size):
            yield self._all[start : start + batch_size]

    async def count_events_after(self, position: int) -> int:
        return max(0, len(self._all) - max(position, 0))

    async def try_lease(self, name: str) -> Lease | None:
        """A lease among the runners of this process (see `sekiban.stores.leases`)."""
        return await self._leases.try_lease(name)

    async def close(self) -> None:
        return None


class InMemorySnapshotStore(ClosesOnExit):
    """The latest snapshot per (aggregate, projector), in process memory."""

    def __init__(self) -> None:
        self._snapshots: dict[tuple[PartitionKeys, str], AggregateSnapshot] = {}

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        return self._snapshots.get((partition_keys, projector_name))

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        key = (snapshot.partition_keys, snapshot.metadata.projector_name)
        current = self._snapshots.get(key)
        if current is not None and current.version > snapshot.version:
            return False
        self._snapshots[key] = snapshot
        return True

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        self._snapshots.pop((partition_keys, projector_name), None)

    async def close(self) -> None:
        return None
