"""DaprAggregateActor: one virtual actor per aggregate, its snapshot in actor state."""

# No `from __future__ import annotations`: the SDK reads the method annotations at
# runtime to pick how to decode arguments, and a string "str" is not `str`.

import logging
from datetime import timedelta

from dapr.actor import Actor, ActorInterface, actormethod
from dapr.actor.id import ActorId
from dapr.actor.runtime.context import ActorRuntimeContext

from sekiban import telemetry
from sekiban.core.clock import Clock, utc_now
from sekiban.core.command import command_metadata
from sekiban.core.domain_types import DomainTypes
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.dapr import messages
from sekiban.errors import InvalidPartitionKeysError, SekibanError
from sekiban.limits import CommandLimits
from sekiban.loading import LoadResult, LoadStatistics
from sekiban.repository import AggregateRepository, AggregateState
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.protocols import EventStore

log = logging.getLogger("sekiban.dapr")

SNAPSHOT_STATE_KEY = "snapshot"
SNAPSHOT_FLUSH_TIMER = "snapshot-flush"
_ID_SEPARATOR = ":"


def actor_id_for(projector_name: str, partition_keys: PartitionKeys) -> str:
    """The actor id of one aggregate: `projector:root@group@uuid`.

    It avoids every character Dapr rejects or routes badly (`/ \\ # ? .`).
    """
    return f"{projector_name}{_ID_SEPARATOR}{partition_keys}"


def parse_actor_id(actor_id: str) -> tuple[str, PartitionKeys]:
    """The projector name and partition keys of an `actor_id_for` id.

    Only that exact spelling is accepted (`InvalidPartitionKeysError` otherwise): one
    aggregate must have one actor, or two warm copies of it would decide on their own.
    """
    projector_name, separator, keys = actor_id.partition(_ID_SEPARATOR)
    if not separator or not projector_name:
        raise InvalidPartitionKeysError(f"not an aggregate actor id: {actor_id!r}")
    return projector_name, PartitionKeys.parse(keys)


class AggregateActorInterface(ActorInterface):
    """The methods an aggregate actor exposes; bodies are JSON (see `messages`)."""

    @actormethod(name="ExecuteCommand")  # type: ignore[untyped-decorator]
    async def execute_command(self, request: str) -> str:
        raise NotImplementedError

    @actormethod(name="LoadAggregate")  # type: ignore[untyped-decorator]
    async def load_aggregate(self) -> str:
        raise NotImplementedError


class ActorStateSnapshotStore:
    """The snapshot store of one actor: its Dapr actor state, saved immediately."""

    def __init__(self, actor: Actor) -> None:
        self._actor = actor

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        found, data = await self._actor._state_manager.try_get_state(SNAPSHOT_STATE_KEY)
        return AggregateSnapshot.from_json(data) if found and data else None

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        # One actor owns its state and runs one call at a time, so there is no older
        # writer to guard against; the version check in the optimizer covers the rest.
        await self._actor._state_manager.set_state(SNAPSHOT_STATE_KEY, snapshot.to_json())
        await self._actor._state_manager.save_state()
        return True

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        await self._actor._state_manager.try_remove_state(SNAPSHOT_STATE_KEY)
        await self._actor._state_manager.save_state()

    async def close(self) -> None:
        return None


class DaprAggregateActor(Actor, AggregateActorInterface):
    """Hosts one aggregate: loads it once, keeps it warm, runs its commands in turn.

    Activation loads the snapshot from actor state and the delta from the event store
    through the same `EventReplayOptimizer` as the single-process executor. A command
    appends with the warm version as expected version; on `ConcurrencyError` (another
    writer got there first) the actor catches up on the delta and decides again as
    `conflict_retry` allows (the repository's one retry loop, shared with
    `SekibanExecutor`). Errors come back as an error reply, never half-saved state.

    Commands are applied at most once per command id (their causation id): the
    executor gives every call one and reuses it when it retries a call whose reply was
    lost. The event store keeps each id unique per stream, and the repository answers a
    resend with the events the command appended the first time (see
    `AggregateRepository.execute_with_retry`), however long ago and whichever actor
    instance applied it.

    The actor id must be the aggregate's canonical one (`actor_id_for`); any other
    spelling of the same aggregate (an upper-case or unhyphenated uuid, spaces, ...)
    is refused with `InvalidPartitionKeysError` when the actor is created.
    """

    def __init__(
        self,
        ctx: ActorRuntimeContext,
        actor_id: ActorId,
        *,
        domain: DomainTypes,
        event_store: EventStore,
        snapshot_config: SnapshotConfiguration | None = None,
        conflict_retry: RetryPolicy = CONFLICT_RETRY,
        clock: Clock = utc_now,
        limits: CommandLimits | None = None,
    ) -> None:
        super().__init__(ctx, actor_id)
        projector_name, self.partition_keys = parse_actor_id(actor_id.id)
        self.projector: AggregateProjector = domain.projector(projector_name)
        canonical = actor_id_for(self.projector.name, self.partition_keys)
        if actor_id.id != canonical:
            raise InvalidPartitionKeysError(
                f"actor id {actor_id.id!r} is not the canonical id {canonical!r} of its "
                "aggregate; refused so that one aggregate has one actor"
            )
        self.repository = AggregateRepository(
            domain,
            event_store,
            ActorStateSnapshotStore(self),
            snapshot_config,
            clock=clock,
            limits=limits,
        )
        self.conflict_retry = conflict_retry
        self.state: AggregateState | None = None
        # After a failed command the warm state may be behind the stream (the failure
        # may have been a conflict): catch up before the next use.
        self.stale = False
        self.activation: LoadStatistics | None = None
        # Whether a command ran since the flush timer's last tick (quiet aggregates
        # are snapshotted by the timer, never at deactivation: see _on_deactivate).
        self.busy = False

    async def _on_activate(self) -> None:
        self.state = await self.repository.load(self.projector, self.partition_keys)
        self.activation = self.state.load
        log.debug("activated %s: %s", self.id, self.activation)
        interval = self._flush_interval()
        if interval is not None:
            # A timer, not a reminder: timers live in daprd and need no scheduler.
            await self.register_timer(
                SNAPSHOT_FLUSH_TIMER, self.flush_snapshot, None, interval, interval
            )

    async def flush_snapshot(self, _: object = None) -> None:
        """Timer callback: snapshot the aggregate when the strategy's time has come, or
        when it has events after its snapshot and no command ran for a whole tick."""
        if self.state is None:
            return
        quiet, self.busy = not self.busy, False
        behind = self.state.aggregate.version > self.state.snapshot_version
        self.state = await self.repository.snapshot_if_due(self.state, force=quiet and behind)

    def _flush_interval(self) -> timedelta | None:
        config = self.repository.snapshot_config.for_projector(self.projector.name)
        return None if config.strategy == "none" else config.time_interval

    async def _on_deactivate(self) -> None:
        # Nothing is saved here: daprd 1.18 has already dropped the actor when it asks
        # the host to deactivate it and refuses its state writes
        # (ERR_ACTOR_INSTANCE_MISSING). The flush timer snapshots quiet aggregates.
        return None

    async def execute_command(self, request: str) -> str:
        with telemetry.actor_method(type(self).__name__, self.id.id, "ExecuteCommand") as span:
            return await self._execute_command(request, span)

    async def _execute_command(self, request: str, span: telemetry.Span) -> str:
        serializer = self.repository.serializer
        try:
            command, metadata = messages.parse_command_request(serializer, request)
            self._check_target(command.partition_keys(), type(command).projector)
            state = await self._warm_state()
            # A resend (same causation id) is answered with its first reply, from the store.
            response, self.state = await self.repository.execute_with_retry(
                self.projector, command, state, command_metadata(metadata), self.conflict_retry
            )
            telemetry.command_applied(span, len(response.events), response.version)
            self.busy = True
            return messages.command_reply(serializer, response)
        except Exception as error:  # every failure becomes an error reply
            telemetry.record_error(span, error)
            self.stale = True
            # The SDK drops pending state changes only on Dapr errors; drop ours so a
            # later call cannot save something this failed call half-made.
            await self._state_manager.clear_cache()
            if not isinstance(error, SekibanError):
                log.info("command on %s rejected: %r", self.id, error)
            return messages.error_reply(error)

    async def load_aggregate(self) -> str:
        """The aggregate, caught up with events other writers appended, and the
        statistics of the load that activated this actor."""
        with telemetry.actor_method(type(self).__name__, self.id.id, "LoadAggregate"):
            state = self.state = await self.repository.catch_up(
                self.projector, await self._warm_state()
            )
        assert self.activation is not None
        return messages.aggregate_reply(
            self.repository.serializer, LoadResult(state.aggregate, self.activation)
        )

    async def _warm_state(self) -> AggregateState:
        if self.state is None:
            await self._on_activate()
        assert self.state is not None
        if self.stale:
            self.state = await self.repository.catch_up(self.projector, self.state)
            self.stale = False
        return self.state

    def _check_target(self, keys: PartitionKeys, projector: type[AggregateProjector]) -> None:
        if keys != self.partition_keys or projector.name != self.projector.name:
            raise InvalidPartitionKeysError(
                f"command for {projector.name} {keys} sent to actor {self.id}"
            )
