"""Run aggregate actors in-process: the SDK's actor runtime without HTTP or a sidecar.

`ActorHarness` is a `DaprSekibanExecutor` whose actor calls go straight into the
dapr SDK's `ActorManager` (activation, method dispatch, state saving, deactivation)
with an in-memory actor client standing in for daprd's state API. `ReminderHarness`
does the same for saga timeouts fired by Dapr reminders (`sekiban.dapr.timeouts`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sekiban._extras import require_extra
from sekiban.core.clock import Clock, utc_now
from sekiban.core.domain_types import DomainTypes
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.executor import SekibanExecutor
from sekiban.limits import CommandLimits
from sekiban.reactions.process import ProcessManager
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.memory import InMemoryEventStore
from sekiban.stores.protocols import EventStore

with require_extra("testing", "sekiban.testing.actors"):
    from dapr.actor.id import ActorId
    from dapr.actor.runtime._reminder_data import ActorReminderData
    from dapr.actor.runtime._type_information import ActorTypeInformation
    from dapr.actor.runtime.context import ActorRuntimeContext
    from dapr.actor.runtime.manager import ActorManager
    from dapr.clients.base import DaprActorClientBase
    from dapr.serializers import DefaultJSONSerializer

    from sekiban.dapr.actor import SNAPSHOT_STATE_KEY, DaprAggregateActor, actor_id_for
    from sekiban.dapr.app import aggregate_actor_factory
    from sekiban.dapr.executor import DaprSekibanExecutor
    from sekiban.dapr.serializer import RawJsonSerializer, RawStateSerializer
    from sekiban.dapr.timeouts import ProcessTimeoutActor, timeout_actor_factory


class InMemoryActorClient(DaprActorClientBase):
    """Actor state in a dict, applied transactionally like daprd applies it."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str, str], bytes] = {}
        self.timers: dict[tuple[str, str, str], bytes] = {}
        self.reminders: dict[tuple[str, str, str], bytes] = {}

    async def invoke_method(
        self, actor_type: str, actor_id: str, method: str, data: bytes | None = None
    ) -> bytes:
        raise NotImplementedError("actor-to-actor calls are not part of the harness")

    async def save_state_transactionally(self, actor_type: str, actor_id: str, data: bytes) -> None:
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
    conflict retries); only the network hop and daprd are replaced.
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
    ) -> None:
        super().__init__(
            domain, event_store or InMemoryEventStore(), transient_retry=RetryPolicy.never()
        )
        self.actor_client = InMemoryActorClient()
        context = ActorRuntimeContext(
            ActorTypeInformation.create(DaprAggregateActor),
            RawJsonSerializer(),
            RawStateSerializer(),
            self.actor_client,
            aggregate_actor_factory(
                domain, self.event_store, snapshot_config, conflict_retry, clock, limits
            ),
        )
        self.manager = ActorManager(context)

    async def _call(self, actor_id: str, method: str, body: bytes | None) -> bytes:
        return await self.manager.dispatch(ActorId(actor_id), method, body or b"")

    async def fire_timers(self) -> int:
        """Fire every registered actor timer once, as daprd would; returns how many."""
        timers = list(self.actor_client.timers.items())
        for (_, actor_id, name), data in timers:
            await self.manager.fire_timer(ActorId(actor_id), name, data)
        return len(timers)

    async def deactivate(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> None:
        """Deactivate the aggregate's actor as Dapr does when it is idle or moved."""
        actor_id = actor_id_for(self.domain.projector(projector).name, partition_keys)
        await self.manager.deactivate_actor(ActorId(actor_id))

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
        data = self.actor_client.state.get(
            (DaprAggregateActor.__name__, actor_id, SNAPSHOT_STATE_KEY)
        )
        return AggregateSnapshot.from_json(data) if data else None


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
