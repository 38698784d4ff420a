"""The `Executor` protocol, and `SekibanExecutor`, its host in one process.

Every host of a domain (this one, `sekiban.dapr.DaprSekibanExecutor`, the test
harness `sekiban.testing.actors.ActorHarness`) has the same four async methods, so
application code and tests can take an `Executor` and not care where aggregates live.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Protocol, TypeVar

from sekiban import telemetry
from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import Clock, utc_now
from sekiban.core.command import Command, CommandResponse, command_keys, command_metadata
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import EventMetadata
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import Query
from sekiban.limits import CommandLimits
from sekiban.loading import LoadResult, SnapshotCounters
from sekiban.projections import BlobStore, ProjectionOptions, Projections, ProjectionStore
from sekiban.projections.manager import DEFAULT_CONSISTENCY_TIMEOUT
from sekiban.repository import AggregateRepository
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.stores.memory import InMemoryEventStore
from sekiban.stores.protocols import EventStore, SnapshotStore

R = TypeVar("R")


class Executor(Protocol):
    """What every host of a domain offers: commands, loads and queries, all async.

    `command_id` identifies the command: it becomes the events' causation id (so it
    must agree with `metadata.causation_id` when both are given, or
    `CommandIdMismatchError` is raised) and is stored with the commit. Every host
    applies a command id at most once per aggregate, enforced by the event store: a
    resend (after a lost reply, a crash, a retry) appends nothing and returns the first
    response. Without one, each call gets a fresh id, so the host's own retries are safe.
    """

    async def command(
        self,
        command: Command,
        metadata: EventMetadata | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandResponse:
        """Decide and append the command's events; raise if it is refused."""
        ...

    async def load(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> LoadResult:
        """The aggregate and the statistics of the load that built it."""
        ...

    async def load_aggregate(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> Aggregate[AggregatePayload]:
        """The aggregate at its latest version (version 0 if it has no events)."""
        ...

    async def query(
        self,
        query: Query[R],
        *,
        after: CommandResponse | str | None = None,
        timeout: timedelta = DEFAULT_CONSISTENCY_TIMEOUT,
    ) -> R:
        """Answer `query` from its multi-projection, caught up to the latest event.

        With `after` (a command's response or its `consistency_token`), the answer
        includes that command's events: the query waits up to `timeout` for its
        projection to apply them (`ConsistencyTimeoutError` after it).
        """
        ...


class SekibanExecutor:
    """Executes a domain's commands and queries against an event store.

    `conflict_retry` says how often, and after what pause, a command that lost a race
    (`ConcurrencyError`, or a refusal decided on a state another writer had moved on)
    or whose write has an unknown outcome (`StoreConnectionError`) catches up and is
    decided again before the error is raised; the default is `CONFLICT_RETRY`, the Dapr
    actor's (measured to let 32 writers on one aggregate all succeed), and
    `RetryPolicy.never()` raises the first conflict. Either way no event is ever lost or
    duplicated. `limits` bounds what one command may append (default `CommandLimits()`:
    1,000 events, 1 MiB per payload, 4 MiB in all).

    Queries are answered by `projections` (a `Projections`); give a `projection_store`
    (e.g. `event_store.projection_store()`) to persist their states, so a restart reads
    only the events after the last save, `projection_blob_store` (e.g. a
    `DirectoryBlobStore`) for states above `projection_options.out_of_line_above`, and
    `projection_options` to tune it.
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore | None = None,
        *,
        snapshot_store: SnapshotStore | None = None,
        snapshot_config: SnapshotConfiguration | None = None,
        conflict_retry: RetryPolicy | None = None,
        clock: Clock = utc_now,
        limits: CommandLimits | None = None,
        projection_store: ProjectionStore | None = None,
        projection_options: ProjectionOptions | None = None,
        projection_blob_store: BlobStore | None = None,
    ) -> None:
        self.domain = domain
        self.event_store: EventStore = event_store or InMemoryEventStore()
        self.repository = AggregateRepository(
            domain,
            self.event_store,
            snapshot_store,
            snapshot_config,
            clock=clock,
            limits=limits,
        )
        self.conflict_retry = conflict_retry or CONFLICT_RETRY
        self.projections = Projections(
            domain,
            self.event_store,
            projection_store,
            blob_store=projection_blob_store,
            options=projection_options,
            clock=clock,
        )

    @property
    def snapshots(self) -> SnapshotCounters:
        """How many snapshots were taken, failed to save, or were discarded on load."""
        return self.repository.snapshots

    async def command(
        self,
        command: Command,
        metadata: EventMetadata | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandResponse:
        """Decide and append the command's events, at most once per command id.

        `command_id` (or `metadata.causation_id`, else a fresh one) becomes the events'
        causation id and is stored with their commit. Sent again with the same id, the
        command appends nothing and returns the first response (same events, same
        version), however long ago it was applied. A write whose reply was lost
        (`StoreConnectionError`) is looked for in the stream and answered if it landed.

        Raises `AggregateStateError` for an aggregate in the wrong state, the handler's
        own errors, and `ConcurrencyError` when `conflict_retry` is exhausted; in each
        case nothing was appended. A `StoreConnectionError` means the outcome is unknown:
        send the command again with the same id.
        """
        keys = command_keys(command)
        projector = self.domain.projector(type(command).projector)
        metadata = command_metadata(metadata, command_id)
        name = type(command).__name__
        with telemetry.command(name, projector.name, keys, metadata.causation_id) as span:
            state = await self.repository.load(projector, keys)
            # A store that answers without suspending (SQLite runs its statements on
            # the loop) would make a whole command one step; other tasks get a turn
            # between the load and the decision.
            await asyncio.sleep(0)
            response, _ = await self.repository.execute_with_retry(
                projector, command, state, metadata, self.conflict_retry
            )
            telemetry.command_applied(span, len(response.events), response.version)
        return response

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

    async def query(
        self,
        query: Query[R],
        *,
        after: CommandResponse | str | None = None,
        timeout: timedelta = DEFAULT_CONSISTENCY_TIMEOUT,
    ) -> R:
        """Answer `query` from its multi-projection, caught up to the latest event
        (with `after`, including that command's events: see `Executor.query`)."""
        return await self.projections.query(query, after=after, timeout=timeout)

    async def close(self) -> None:
        """Save the projections that advanced since their last save (with a
        projection store); the stores stay open (they are the caller's)."""
        await self.projections.close()
