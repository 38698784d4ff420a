"""Run aggregate and projector actors in-process: the SDK's actor runtime without HTTP
or a sidecar.

`ActorHarness` is a `DaprSekibanExecutor` whose actor calls go straight into the
dapr SDK's `ActorManager`s (activation, method dispatch, state saving, deactivation)
with an in-memory actor client standing in for daprd's state API. `ReminderHarness`
does the same for saga timeouts fired by Dapr reminders (`sekiban.dapr.timeouts`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sekiban._extras import require_extra
from sekiban.core.clock import Clock, utc_now
from sekiban.core.domain_types import DomainTypes
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import MultiProjector
from sekiban.executor import SekibanExecutor
from sekiban.limits import CommandLimits
from sekiban.projections import ProjectionOptions, ProjectionRecord
from sekiban.reactions.process import ProcessManager
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.memory import InMemoryEventStore
from sekiban.stores.protocols import EventStore

with require_extra("testing", "sekiban.testing.actors"):
    from dapr.actor import Actor
    from dapr.actor.id import ActorId
    from dapr.actor.runtime._reminder_data import ActorReminderData
    from dapr.actor.runtime._type_information import ActorTypeInformation
    from dapr.actor.runtime.context import ActorRuntimeContext
    from dapr.actor.runtime.manager import ActorManager
    from dapr.clients.base import DaprActorClientBase
    from dapr.clients.exceptions import DaprInternalError
    from dapr.serializers import DefaultJSONSerializer

    from sekiban.dapr.actor import SNAPSHOT_STATE_KEY, DaprAggregateActor, actor_id_for
    from sekiban.dapr.app import ActorFactory, aggregate_actor_factory, projector_actor_factory
    from sekiban.dapr.executor import (
        AGGREGATE_ACTOR_TYPE,
        PROJECTOR_ACTOR_TYPE,
        DaprSekibanExecutor,
    )
    from sekiban.dapr.projection_state import (
        DEFAULT_MAX_ACTOR_STATE_BYTES,
        PROJECTION_STATE_KEY,
        record_from_document,
    )
    from sekiban.dapr.projector_actor import (
        DEFAULT_MAX_ANSWER_BYTES,
        DaprProjectorActor,
        projector_actor_id,
    )
    from sekiban.dapr.serializer import RawJsonSerializer, RawStateSerializer
    from sekiban.dapr.timeouts import ProcessTimeoutActor, timeout_actor_factory


class InMemoryActorClient(DaprActorClientBase):
    """Actor state in a dict, applied transactionally like daprd applies it.

    The state writes of actors in `deactivating` (type, id) are refused as daprd 1.18
    refuses them (`ERR_ACTOR_INSTANCE_MISSING`): it drops an actor before asking its
    host to deactivate it.
    """

    def __init__(self) -> None:
        self.state: dict[tuple[str, str, str], bytes] = {}
        self.timers: dict[tuple[str, str, str], bytes] = {}
        self.deactivating: set[tuple[str, str]] = set()
        self.reminders: dict[tuple[str, str, str], bytes] = {}

    async def invoke_method(
        self, actor_type: str, actor_id: str, method: str, data: bytes | None = None
    ) -> bytes:
        raise NotImplementedError("actor-to-actor calls are not part of the harness")

    async def save_state_transactionally(self, actor_type: str, actor_id: str, data: bytes) -> None:
        if (actor_type, actor_id) in self.deactivating:
            raise DaprInternalError("actor instance is missing", "ERR_ACTOR_INSTANCE_MISSING")
        operations: list[dict[str, Any]] = json.loads(data)
        changes = dict(self.state)
        for operation in operations:
            key = (actor_type, actor_id, operation["request"]["key"])
            if operation["operation"] == "upsert":
                changes[key] = json.dumps(operation["request"]["value"]).encode()
            else:
                changes.pop(key, None)
        self.state = changes

    async def get_state(self, actor_type: str, actor_id: str, name: str) -> bytes:
        return self.state.get((actor_type, actor_id, name), b"")

    async def register_reminder(
        self, actor_type: str, actor_id: str, name: str, data: bytes
    ) -> None:
        self.reminders[(actor_type, actor_id, name)] = data

    async def unregister_reminder(self, actor_type: str, actor_id: str, name: str) -> None:
        self.reminders.pop((actor_type, actor_id, name), None)

    async def register_timer(self, actor_type: str, actor_id: str, name: str, data: bytes) -> None:
        self.timers[(actor_type, actor_id, name)] = data

    async def unregister_timer(self, actor_type: str, actor_id: str, name: str) -> None:
        self.timers.pop((actor_type, actor_id, name), None)


class ActorHarness(DaprSekibanExecutor):
    """The Dapr executor with in-process actors, for fast tests of actor-hosted domains.

    An `Executor` like the others: the same `command`, `load`, `load_aggregate` and
    `query`, with the Dapr host's at-most-once handling of command ids.

    Everything an actor does runs for real (snapshot in actor state, warm aggregate,
    conflict retries; a projection restored from actor state, caught up and saved
    back); only the network hop and daprd are replaced.
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore | None = None,
        *,
        snapshot_config: SnapshotConfiguration | None = None,
        conflict_retry: RetryPolicy = CONFLICT_RETRY,
        clock: Clock = utc_now,
        limits: CommandLimits | None = None,
        projection_options: ProjectionOptions | None = None,
        max_projection_state_bytes: int = DEFAULT_MAX_ACTOR_STATE_BYTES,
        max_query_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        store = event_store or InMemoryEventStore()
        super().__init__(domain, store, transient_retry=RetryPolicy.never())
        self.event_store: EventStore = store
        self.actor_client = InMemoryActorClient()
        self.managers = {
            AGGREGATE_ACTOR_TYPE: self._manager(
                DaprAggregateActor,
                aggregate_actor_factory(
                    domain, store, snapshot_config, conflict_retry, clock, limits
                ),
            ),
            PROJECTOR_ACTOR_TYPE: self._manager(
                DaprProjectorActor,
                projector_actor_factory(
                    domain,
                    store,
                    projection_options,
                    max_projection_state_bytes,
                    clock,
                    max_query_answer_bytes,
                ),
            ),
        }
        self.manager = self.managers[AGGREGATE_ACTOR_TYPE]
        self._turns: dict[tuple[str, str], asyncio.Lock] = {}

    def _manager(self, actor_type: type[Actor], factory: ActorFactory) -> ActorManager:
        context = ActorRuntimeContext(
            ActorTypeInformation.create(actor_type),
            RawJsonSerializer(),
            RawStateSerializer(),
            self.actor_client,
            factory,
        )
        return ActorManager(context)

    async def _call(
        self,
        actor_id: str,
        method: str,
        body: bytes | None,
        *,
        actor_type: str = AGGREGATE_ACTOR_TYPE,
        timeout: timedelta | None = None,
    ) -> bytes:
        async with self._turn(actor_type, actor_id):
            return await self.managers[actor_type].dispatch(ActorId(actor_id), method, body or b"")

    def _turn(self, actor_type: str, actor_id: str) -> asyncio.Lock:
        """The lock of one actor: daprd runs one call or timer of an actor at a time
        (turn-based concurrency), and the harness does too."""
        return self._turns.setdefault((actor_type, actor_id), asyncio.Lock())

    async def fire_timers(self) -> int:
        """Fire every registered actor timer once, as daprd would; returns how many."""
        timers = list(self.actor_client.timers.items())
        for (actor_type, actor_id, name), data in timers:
            async with self._turn(actor_type, actor_id):
                await self.managers[actor_type].fire_timer(ActorId(actor_id), name, data)
        return len(timers)

    async def deactivate(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> None:
        """Deactivate the aggregate's actor as Dapr does when it is idle or moved,
        refusing the state writes it tries meanwhile, as daprd 1.18 does."""
        actor_id = actor_id_for(self.domain.projector(projector).name, partition_keys)
        key = (AGGREGATE_ACTOR_TYPE, actor_id)
        self.actor_client.deactivating.add(key)
        try:
            await self.manager.deactivate_actor(ActorId(actor_id))
        finally:
            self.actor_client.deactivating.discard(key)

    def active_actor(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> DaprAggregateActor | None:
        actor_id = actor_id_for(self.domain.projector(projector).name, partition_keys)
        actor = self.manager._active_actors.get(actor_id)
        return actor if isinstance(actor, DaprAggregateActor) else None

    def stored_snapshot(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> AggregateSnapshot | None:
        """The snapshot as saved in (in-memory) actor state, or None."""
        actor_id = actor_id_for(self.domain.projector(projector).name, partition_keys)
        data = self.actor_client.state.get((AGGREGATE_ACTOR_TYPE, actor_id, SNAPSHOT_STATE_KEY))
        return AggregateSnapshot.from_json(data) if data else None

    async def deactivate_projector(
        self, projector: type[MultiProjector[Any]] | str, *, as_daprd: bool = True
    ) -> None:
        """Deactivate a multi-projector's actor as Dapr does when it is idle or moved:
        by default refusing the state writes it tries meanwhile, as daprd 1.18 does
        (`as_daprd=False` lets them through)."""
        manager = self.managers[PROJECTOR_ACTOR_TYPE]
        actor_id = self._projector_actor_id(projector)
        key = (PROJECTOR_ACTOR_TYPE, actor_id)
        if as_daprd:
            self.actor_client.deactivating.add(key)
        try:
            await manager.deactivate_actor(ActorId(actor_id))
        finally:
            self.actor_client.deactivating.discard(key)

    def forget_projector(self, projector: type[MultiProjector[Any]] | str) -> None:
        """Drop a multi-projector's actor without deactivating it, as when its host is
        killed: what it applied since its last save is lost, its actor state stays."""
        manager = self.managers[PROJECTOR_ACTOR_TYPE]
        manager._active_actors.pop(self._projector_actor_id(projector), None)

    def active_projector(
        self, projector: type[MultiProjector[Any]] | str
    ) -> DaprProjectorActor | None:
        """The multi-projector's actor while it is active (its `projections` show the
        restore and save counters), else None."""
        manager = self.managers[PROJECTOR_ACTOR_TYPE]
        actor = manager._active_actors.get(self._projector_actor_id(projector))
        return actor if isinstance(actor, DaprProjectorActor) else None

    def stored_projection_key(
        self, projector: type[MultiProjector[Any]] | str
    ) -> tuple[str, str, str]:
        """Where a multi-projector's actor keeps its record in (in-memory) actor state."""
        return (PROJECTOR_ACTOR_TYPE, self._projector_actor_id(projector), PROJECTION_STATE_KEY)

    def stored_projection(
        self, projector: type[MultiProjector[Any]] | str
    ) -> ProjectionRecord | None:
        """The projection record as saved in (in-memory) actor state, or None."""
        data = self.actor_client.state.get(self.stored_projection_key(projector))
        name = self.domain.multi_projector(projector).name
        return record_from_document(name, data) if data else None

    def _projector_actor_id(self, projector: type[MultiProjector[Any]] | str) -> str:
        return projector_actor_id(self.domain.multi_projector(projector).name)


class ReminderHarness:
    """Saga timeouts as Dapr reminders, in process: a `Reminders` for
    `dapr_reaction_runner` that keeps them in memory, and `fire_due` to fire those due
    by `clock` into `ProcessTimeoutActor`s run by the SDK's `ActorManager`, as daprd
    and the scheduler would.

    `registered` lists the pending reminders as `(actor id, reminder name)`.
    """

    def __init__(
        self,
        executor: SekibanExecutor,
        process_managers: Sequence[ProcessManager[Any]],
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.clock = clock
        self.actor_client = InMemoryActorClient()
        self.due_at: dict[tuple[str, str, str], datetime] = {}
        context = ActorRuntimeContext(
            ActorTypeInformation.create(ProcessTimeoutActor),
            RawJsonSerializer(),
            RawStateSerializer(),
            self.actor_client,
            timeout_actor_factory(executor, process_managers),
        )
        self.manager = ActorManager(context)

    @property
    def registered(self) -> list[tuple[str, str]]:
        return [(actor_id, name) for _, actor_id, name in self.actor_client.reminders]

    async def register(
        self,
        actor_type: str,
        actor_id: str,
        name: str,
        data: bytes,
        due_time: timedelta,
        period: timedelta,
    ) -> None:
        body = DefaultJSONSerializer().serialize(
            ActorReminderData(name, data, due_time, period).as_dict()
        )
        await self.actor_client.register_reminder(actor_type, actor_id, name, body)
        self.due_at[(actor_type, actor_id, name)] = self.clock() + due_time

    async def unregister(self, actor_type: str, actor_id: str, name: str) -> None:
        await self.actor_client.unregister_reminder(actor_type, actor_id, name)

    async def fire_due(self) -> int:
        """Fire every reminder whose due time has come, once; returns how many. Those
        the actor does not unregister (its step failed) fire again next time."""
        now = self.clock()
        due = [
            (key, body)
            for key, body in self.actor_client.reminders.items()
            if self.due_at[key] <= now
        ]
        for (_, actor_id, name), body in due:
            await self.manager.fire_reminder(ActorId(actor_id), name, body)
        return len(due)
