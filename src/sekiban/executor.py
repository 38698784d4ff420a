"""SekibanExecutor: runs commands, loads aggregates and answers queries in one process."""

from __future__ import annotations

from typing import TypeVar

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import Clock, utc_now
from sekiban.core.command import Command, CommandResponse, command_keys, command_metadata
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import EventMetadata
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import Query
from sekiban.errors import ConcurrencyError
from sekiban.loading import LoadResult, SnapshotCounters
from sekiban.projections import Projections
from sekiban.repository import DEFAULT_MAX_PAYLOAD_BYTES, AggregateRepository
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.stores.memory import InMemoryEventStore
from sekiban.stores.protocols import EventStore, SnapshotStore

R = TypeVar("R")


class SekibanExecutor:
    """Executes a domain's commands and queries against an event store.

    `conflict_retries` is how often a command that lost a race (`ConcurrencyError`) is
    reloaded and decided again before the error is raised; 0 raises at once. Either
    way no event is ever lost or duplicated.
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore | None = None,
        *,
        snapshot_store: SnapshotStore | None = None,
        snapshot_config: SnapshotConfiguration | None = None,
        conflict_retries: int = 0,
        clock: Clock = utc_now,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.domain = domain
        self.event_store: EventStore = event_store or InMemoryEventStore()
        self.repository = AggregateRepository(
            domain,
            self.event_store,
            snapshot_store,
            snapshot_config,
            clock=clock,
            max_payload_bytes=max_payload_bytes,
        )
        self.conflict_retries = conflict_retries
        self.projections = Projections(domain, self.event_store)

    @property
    def snapshots(self) -> SnapshotCounters:
        """How many snapshots were taken, failed to save, or were discarded on load."""
        return self.repository.snapshots

    async def command(
        self, command: Command, metadata: EventMetadata | None = None
    ) -> CommandResponse:
        """Decide and append the command's events.

        Raises `AggregateStateError` for an aggregate in the wrong state, the handler's
        own errors, and `ConcurrencyError` when retries are exhausted; in each case
        nothing was appended.
        """
        keys = command_keys(command)
        projector = self.domain.projector(type(command).projector)
        metadata = command_metadata(metadata)
        for attempt in range(self.conflict_retries + 1):
            state = await self.repository.load(projector, keys)
            try:
                response, _ = await self.repository.execute(projector, command, state, metadata)
                return response
            except ConcurrencyError:
                if attempt == self.conflict_retries:
                    raise
        raise AssertionError("unreachable")

    async def load_aggregate(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> Aggregate[AggregatePayload]:
        """The aggregate at its latest version (version 0 if it has no events)."""
        return (await self.load(projector, partition_keys)).aggregate

    async def load(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> LoadResult:
        """Like `load_aggregate`, with the load's statistics (snapshot used, events replayed).

        A load that was expensive enough for the load-cost trigger saves a snapshot.
        """
        state = await self.repository.load(self.domain.projector(projector), partition_keys)
        await self.repository.snapshot_if_due(state)
        assert state.load is not None
        return LoadResult(state.aggregate, state.load)

    async def query(self, query: Query[R]) -> R:
        """Answer `query` from its multi-projection, caught up to the latest event."""
        return await self.projections.query(query)
