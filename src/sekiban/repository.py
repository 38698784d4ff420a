"""The one mechanism every host shares: load, decide, append, maybe snapshot.

`SekibanExecutor` runs it per command; the Dapr actor keeps the `AggregateState`
warm between commands. Neither repeats any of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import Clock
from sekiban.core.command import Command, CommandResponse, decide
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import EventMetadata
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.serialization import Serializer
from sekiban.errors import ConcurrencyError, StoreConnectionError
from sekiban.limits import CommandLimits
from sekiban.loading import EventReplayOptimizer, LoadStatistics, SnapshotCounters
from sekiban.retry import RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration, SnapshotStrategyFactory
from sekiban.snapshot.strategies import SnapshotContext, SnapshotStrategy
from sekiban.snapshot.types import RejectionReason, take_snapshot
from sekiban.stores.protocols import EventStore, SnapshotStore

log = logging.getLogger("sekiban")

Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class AggregateState:
    """An aggregate as a host holds it, with what snapshot decisions need.

    `load` is the load that built it; it counts toward the load-cost trigger only
    until the next command, so a warm aggregate is not snapshotted over and over.
    """

    aggregate: Aggregate[AggregatePayload]
    snapshot_version: int = 0
    snapshot_taken_at: datetime | None = None
    load: LoadStatistics | None = None


class AggregateRepository:
    """Loads aggregates through the replay optimizer and commits commands' events."""

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore,
        snapshot_store: SnapshotStore | None = None,
        snapshot_config: SnapshotConfiguration | None = None,
        *,
        clock: Clock,
        limits: CommandLimits | None = None,
    ) -> None:
        self.domain = domain
        self.serializer = Serializer(domain)
        self.event_store = event_store
        self.snapshot_store = snapshot_store
        self.snapshot_config = snapshot_config or SnapshotConfiguration()
        self.clock = clock
        self.limits = limits or CommandLimits()
        self.snapshots = SnapshotCounters()
        self.optimizer = EventReplayOptimizer(
            event_store,
            self.serializer,
            snapshot_store,
            counters=self.snapshots,
            signing=self.snapshot_config.signing,
            max_snapshot_bytes=self.snapshot_config.max_snapshot_bytes,
        )
        self._strategies: dict[str, SnapshotStrategy] = {}

    async def load(
        self, projector: AggregateProjector, partition_keys: PartitionKeys
    ) -> AggregateState:
        result = await self.optimizer.load(projector, partition_keys)
        stats = result.statistics
        return AggregateState(
            result.aggregate, stats.snapshot_version, stats.snapshot_taken_at, stats
        )

    async def catch_up(
        self, projector: AggregateProjector, state: AggregateState
    ) -> AggregateState:
        """`state` advanced by events others appended since it was loaded."""
        aggregate, _ = await self.optimizer.catch_up(projector, state.aggregate)
        return replace(state, aggregate=aggregate)

    async def execute(
        self,
        projector: AggregateProjector,
        command: Command,
        state: AggregateState,
        metadata: EventMetadata,
    ) -> tuple[CommandResponse, AggregateState]:
        """Decide and append the command's events at `state`'s version.

        Raises `ConcurrencyError` when the stream moved on (nothing appended), the
        handler's own errors, `AggregateStateError`, or the error of a `limits` the
        events exceed (nothing appended). The snapshot, if due, is
        saved only after the events are committed, and its failure never fails the command.
        """
        aggregate = state.aggregate
        events = await decide(command, aggregate, metadata, self.clock)
        if not events:
            return CommandResponse(aggregate.partition_keys, (), aggregate.version), state
        stored = [self.serializer.to_stored(e) for e in events]
        self.limits.check(type(command).__name__, stored)
        await self.event_store.append(stored, aggregate.version)
        aggregate = projector.fold(aggregate, events)
        state = replace(state, aggregate=aggregate)
        state = await self.snapshot_if_due(state)
        return CommandResponse(aggregate.partition_keys, tuple(events), aggregate.version), replace(
            state, load=None
        )

    async def execute_with_retry(
        self,
        projector: AggregateProjector,
        command: Command,
        state: AggregateState,
        metadata: EventMetadata,
        retry: RetryPolicy,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> tuple[CommandResponse, AggregateState]:
        """`execute`, tried again while the stream moves under it, as `retry` allows.

        A `ConcurrencyError` (another writer appended first) or a refusal decided on a
        state that turns out to be stale makes it catch up on the delta, wait as the
        policy says and decide again. A refusal on an up-to-date state, an exhausted
        policy, or a `StoreConnectionError` (the write may have landed: deciding again
        could apply the command twice) is raised as is. The returned state is the one
        the command was applied to; after a failure, callers that keep a state warm
        must catch it up themselves.
        """
        attempt = 1
        while True:
            try:
                return await self.execute(projector, command, state, metadata)
            except StoreConnectionError:
                raise
            except Exception as error:
                if not retry.retries_left(attempt):
                    raise
                caught_up = await self.catch_up(projector, state)
                moved = caught_up.aggregate.version != state.aggregate.version
                if not moved and not isinstance(error, ConcurrencyError):
                    raise
                state = caught_up
            attempt += 1
            log.debug(
                "retrying %s on %s at version %d (attempt %d of %d)",
                type(command).__name__,
                state.aggregate.partition_keys,
                state.aggregate.version,
                attempt,
                retry.attempts,
            )
            await sleep(retry.delay_before(attempt).total_seconds())

    async def snapshot_if_due(
        self, state: AggregateState, *, force: bool = False
    ) -> AggregateState:
        """Save a snapshot if the strategy (or `force`) says so; returns the new state.

        A load that discarded a stored snapshot also forces one, so a corrupt or
        incompatible snapshot is replaced rather than replayed around every time.
        """
        aggregate = state.aggregate
        since = aggregate.version - state.snapshot_version
        if self.snapshot_store is None or since <= 0:
            return state
        now = self.clock()
        load = state.load
        replace_bad = (
            load is not None
            and load.rejection is not None
            and load.rejection.reason is not RejectionReason.UNREADABLE
        )
        context = SnapshotContext(
            aggregate_version=aggregate.version,
            events_since_snapshot=since,
            last_snapshot_at=state.snapshot_taken_at,
            now=now,
            replayed_events=load.events_replayed if load else 0,
            load_duration_ms=load.duration_ms if load else 0.0,
        )
        strategy = self.strategy_for(aggregate.projector_name)
        if not (force or replace_bad or strategy.should_snapshot(context)):
            return state
        config = self.snapshot_config.for_projector(aggregate.projector_name)
        try:
            snapshot = take_snapshot(
                aggregate,
                self.serializer,
                taken_at=now,
                events_since_previous=since,
                compress_above=config.compress_above_bytes,
                compression_level=config.compression_level,
                signing=self.snapshot_config.signing,
                max_bytes=self.snapshot_config.max_snapshot_bytes,
            )
            if replace_bad:
                # The stored one may be ahead of the stream, and a save never replaces
                # a higher version: remove it first.
                await self.snapshot_store.delete(aggregate.partition_keys, aggregate.projector_name)
            await self.snapshot_store.save(snapshot)
        except Exception:
            self.snapshots.failed += 1
            log.exception(
                "snapshot of %s at version %d failed", aggregate.partition_keys, aggregate.version
            )
            return state
        self.snapshots.taken += 1
        return replace(state, snapshot_version=aggregate.version, snapshot_taken_at=now)

    def strategy_for(self, projector_name: str) -> SnapshotStrategy:
        strategy = self._strategies.get(projector_name)
        if strategy is None:
            config = self.snapshot_config.for_projector(projector_name)
            strategy = self._strategies[projector_name] = SnapshotStrategyFactory.create(config)
        return strategy
