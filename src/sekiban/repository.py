"""The one mechanism every host shares: load, decide, append, maybe snapshot.

`SekibanExecutor` runs it per command; the Dapr actor keeps the `AggregateState`
warm between commands. Neither repeats any of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sekiban import telemetry
from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import Clock
from sekiban.core.command import Command, CommandResponse, decide
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.serialization import Serializer
from sekiban.errors import (
    ConcurrencyError,
    DuplicateCommandError,
    StoreAuthenticationError,
    StoreConnectionError,
)
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
        self.limits = limits or CommandLimits()
        self.serializer = Serializer(domain, max_depth=self.limits.max_depth)
        self.event_store = event_store
        self.snapshot_store = snapshot_store
        self.snapshot_config = snapshot_config or SnapshotConfiguration()
        self.clock = clock
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

    async def commit(
        self,
        projector: AggregateProjector,
        state: AggregateState,
        command_name: str,
        events: list[Event[EventPayload]],
        command_id: str,
    ) -> tuple[CommandResponse, AggregateState]:
        """Append a command's events, decided at `state`'s version, under `command_id`.

        Raises `ConcurrencyError` when the stream moved on, `DuplicateCommandError`
        when it already holds `command_id`, `UnstorablePayloadError` for a payload that
        would not read back as it is, or the error of a `limits` the events exceed
        (nothing appended in each case). The snapshot, if due, is saved only
        after the events are committed, and its failure never fails the command.
        """
        aggregate = state.aggregate
        stored = [self.serializer.to_stored(e) for e in events]
        self.limits.check(command_name, stored)
        attributes = {
            "sekiban.events.count": len(stored),
            "sekiban.expected_version": aggregate.version,
        }
        with telemetry.span("sekiban.append", attributes):
            await self.event_store.append(stored, aggregate.version, command_id=command_id or None)
        aggregate = projector.fold(aggregate, events)
        state = await self.snapshot_if_due(replace(state, aggregate=aggregate))
        response = CommandResponse(aggregate.partition_keys, tuple(events), aggregate.version)
        return response, replace(state, load=None)

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
        """Decide and commit the command at `state`, applying its id at most once.

        The command id is `metadata.causation_id`. Whenever the command may already be
        in the stream, it is answered with the events it appended then, never applied
        again: the store refused it as a duplicate, the handler refused it (or decided
        nothing) on a state it may itself have made, or an earlier try's write landed
        with its reply lost.

        Tried again, as `retry` allows and after catching up on the delta: a lost race
        (`ConcurrencyError`), a write whose outcome is unknown (`StoreConnectionError`;
        not `StoreAuthenticationError`) and a refusal decided on a state that turns out
        stale. Before deciding again it looks for its command id among the events it
        caught up on. Anything else is raised as is, as are these once `retry` is
        exhausted. The returned state is the one the command was applied to (or, for
        an answered resend, the stream as read); after a failure, callers that keep a
        state warm must catch it up themselves.
        """
        try:
            result = await self._execute_with_retry(
                projector, command, state, metadata, retry, sleep
            )
        except Exception as error:
            telemetry.count_command(type(command).__name__, error)
            raise
        telemetry.count_command(type(command).__name__, None)
        return result

    async def _execute_with_retry(
        self,
        projector: AggregateProjector,
        command: Command,
        state: AggregateState,
        metadata: EventMetadata,
        retry: RetryPolicy,
        sleep: Sleep,
    ) -> tuple[CommandResponse, AggregateState]:
        command_id = metadata.causation_id
        attempt = 1
        while True:
            try:
                with telemetry.span("sekiban.decide", {"sekiban.attempt": attempt}):
                    events = await decide(command, state.aggregate, metadata, self.clock)
            except Exception:
                # A refusal decided on a stale state is a lost race in disguise.
                if retry.retries_left(attempt):
                    caught_up, answered = await self._catch_up(projector, state, command_id)
                    if answered is not None:
                        return answered
                    moved = caught_up.aggregate.version != state.aggregate.version
                    state, reason = caught_up, "stale-refusal"
                else:
                    moved = False
                if not moved:
                    # Refused by the state a first submission of this command made?
                    answered = await self.recall(projector, state, command_id)
                    if answered is None:
                        raise
                    return answered
            else:
                if not events:
                    answered = await self.recall(projector, state, command_id)
                    aggregate = state.aggregate
                    nothing = CommandResponse(aggregate.partition_keys, (), aggregate.version)
                    return answered or (nothing, state)
                try:
                    return await self.commit(
                        projector, state, type(command).__name__, events, command_id
                    )
                except DuplicateCommandError:
                    answered = await self.recall(projector, state, command_id)
                    if answered is None:
                        raise
                    return answered
                except (ConcurrencyError, StoreConnectionError) as error:
                    if isinstance(error, StoreAuthenticationError):
                        raise  # refused before anything was written
                    # The stream moved on, or this write may have landed unseen.
                    caught_up, answered = await self._catch_up(projector, state, command_id)
                    if answered is not None:
                        return answered
                    if not retry.retries_left(attempt):
                        raise
                    state = caught_up
                    conflict = isinstance(error, ConcurrencyError)
                    reason = "conflict" if conflict else "unknown-outcome"
            attempt += 1
            telemetry.retrying(type(command).__name__, reason, attempt)
            log.debug(
                "retrying %s on %s at version %d (attempt %d of %d)",
                type(command).__name__,
                state.aggregate.partition_keys,
                state.aggregate.version,
                attempt,
                retry.attempts,
            )
            await sleep(retry.delay_before(attempt).total_seconds())

    async def _catch_up(
        self, projector: AggregateProjector, state: AggregateState, command_id: str
    ) -> tuple[AggregateState, tuple[CommandResponse, AggregateState] | None]:
        """`state` caught up, and the answer to `command_id` if the new events hold it."""
        aggregate, caused = await self.optimizer.catch_up(projector, state.aggregate, command_id)
        state = replace(state, aggregate=aggregate)
        response = self._response(aggregate.partition_keys, caused)
        return state, None if response is None else (response, replace(state, load=None))

    async def recall(
        self, projector: AggregateProjector, state: AggregateState, command_id: str
    ) -> tuple[CommandResponse, AggregateState] | None:
        """The first response to `command_id`, read from the store, and `state` caught
        up past its events; None when the stream does not hold it."""
        keys = state.aggregate.partition_keys
        stored = await self.event_store.read_command(keys, command_id) if command_id else None
        response = self._response(keys, [self.serializer.to_event(e) for e in stored or []])
        if response is None:
            return None
        if state.aggregate.version < response.version:
            state = await self.catch_up(projector, state)
        return response, replace(state, load=None)

    def _response(
        self, keys: PartitionKeys, events: list[Event[EventPayload]]
    ) -> CommandResponse | None:
        if not events:
            return None
        return CommandResponse(keys, tuple(events), events[-1].version)

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
            load_duration=load.duration if load else timedelta(0),
        )
        strategy = self.strategy_for(aggregate.projector_name)
        if not (force or replace_bad or strategy.should_snapshot(context)):
            return state
        config = self.snapshot_config.for_projector(aggregate.projector_name)
        attributes = {
            "sekiban.aggregate.version": aggregate.version,
            "sekiban.snapshot.replaces_rejected": replace_bad,
        }
        with telemetry.span("sekiban.snapshot", attributes) as span:
            error = await self._save_snapshot(aggregate, config, now, since, replace_bad)
            if error is not None:
                telemetry.record_error(span, error)
        telemetry.snapshot_taken(aggregate.projector_name, error)
        if error is not None:
            return state
        self.snapshots.taken += 1
        return replace(state, snapshot_version=aggregate.version, snapshot_taken_at=now)

    async def _save_snapshot(
        self,
        aggregate: Aggregate[AggregatePayload],
        config: SnapshotConfiguration,
        now: datetime,
        since: int,
        replace_bad: bool,
    ) -> Exception | None:
        """Take and save the snapshot; the error (logged and counted) if that failed."""
        assert self.snapshot_store is not None
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
        except Exception as error:
            self.snapshots.failed += 1
            log.exception(
                "snapshot of %s at version %d failed", aggregate.partition_keys, aggregate.version
            )
            return error
        return None

    def strategy_for(self, projector_name: str) -> SnapshotStrategy:
        strategy = self._strategies.get(projector_name)
        if strategy is None:
            config = self.snapshot_config.for_projector(projector_name)
            strategy = self._strategies[projector_name] = SnapshotStrategyFactory.create(config)
        return strategy
