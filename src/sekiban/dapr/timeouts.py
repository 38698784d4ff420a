"""Saga timeouts fired by Dapr actor reminders: durable in the Dapr scheduler, fired on
whichever app instance hosts the actor, surviving the instance that scheduled them.

Two halves:

- `DaprTimeoutSubscriber` runs a `ProcessManager` under a `ReactionRunner` (see
  `dapr_reaction_runner`), like `ProcessSubscriber`, except that it does not fire due
  timeouts itself: it hands each pending timeout to Dapr as a reminder of the
  `ProcessTimeoutActor` of its process, and unregisters the reminders of timeouts
  that were cancelled (or whose process completed).
- `ProcessTimeoutActor`, hosted by every actor app (`create_actor_app(...,
  process_managers=...)`), receives the reminder, runs the same deduplicated "fire
  timeout" step the runner uses (`ProcessSubscriber.fire_timeout`), then unregisters it.

A reminder is named after its timeout id (`reminder_name`): registering it again (after
a crash before the checkpoint) replaces it rather than adding a second one. It repeats
every `retry_period` until unregistered, so a step that failed (store down, instance
killed mid-step) is tried again; a repeat after success changes nothing, since the
step's command id is derived from the timeout id.
"""

# No `from __future__ import annotations`: the SDK reads the actor's method
# annotations at runtime.

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from dapr.actor import Actor, ActorInterface, Remindable
from dapr.actor.id import ActorId
from dapr.actor.runtime.context import ActorRuntimeContext

from sekiban.core.clock import Clock, utc_now
from sekiban.dapr.reminders import DaprReminders, Reminders
from sekiban.errors import ConfigurationError
from sekiban.executor import SekibanExecutor
from sekiban.reactions.process import ProcessManager, ProcessSubscriber
from sekiban.reactions.runner import Hosted, ReactionRunner
from sekiban.reactions.subscriber import DueWork, Host

log = logging.getLogger("sekiban.dapr")

TIMEOUT_ACTOR_TYPE = "ProcessTimeoutActor"
RETRY_PERIOD = timedelta(seconds=30)
"""How often a reminder fires again until its step succeeded and unregistered it."""

_ID_SEPARATOR = ":"


def timeout_actor_id(process_name: str, stream: str) -> str:
    """The actor that fires the timeouts of one process: `process-name:stream`."""
    return f"{process_name}{_ID_SEPARATOR}{stream}"


def reminder_name(timeout_id: str) -> str:
    """The reminder of one timeout; the same for every registration of it."""
    return f"timeout-{timeout_id}"


class ExecutorHost:
    """What a process step needs of its host (`reactions.subscriber.Host`), outside a
    runner: an executor and a clock."""

    def __init__(self, executor: SekibanExecutor, clock: Clock = utc_now) -> None:
        self.executor = executor
        self.serializer = executor.repository.serializer
        self.clock = clock

    def now(self) -> datetime:
        return self.clock()


class DaprTimeoutSubscriber(ProcessSubscriber):
    """A `ProcessSubscriber` whose timeouts Dapr reminders fire (see the module doc).

    Its checkpoint also lists the timeouts handed to Dapr (`reminded`), so a restarted
    runner neither registers them again nor forgets to unregister cancelled ones.
    Registration and unregistration are due work of the runner: a failure is retried
    with backoff, then parked like any other.
    """

    def __init__(
        self,
        process: ProcessManager[Any],
        reminders: Reminders,
        *,
        retry_period: timedelta = RETRY_PERIOD,
    ) -> None:
        super().__init__(process)
        self.reminders = reminders
        self.retry_period = retry_period
        self.reminded: dict[str, dict[str, Any]] = {}

    def due(self, now: datetime, host: Host) -> list[DueWork]:
        remind = [
            DueWork(f"remind {t['timeout_id']}", self._reminding(t, host))
            for timeout_id, t in self.timeouts.items()
            if timeout_id not in self.reminded
        ]
        # Gone from the index: cancelled, completed, or fired (then the actor has
        # unregistered it already, and this is a no-op).
        forget = [
            DueWork(f"unremind {t['timeout_id']}", self._forgetting(t))
            for timeout_id, t in self.reminded.items()
            if timeout_id not in self.timeouts
        ]
        return remind + forget

    def _reminding(self, timeout: dict[str, Any], host: Host) -> Callable[[], Any]:
        async def remind() -> None:
            due_in = datetime.fromisoformat(timeout["due_at"]) - host.now()
            await self.reminders.register(
                TIMEOUT_ACTOR_TYPE,
                timeout_actor_id(self.name, timeout["stream"]),
                reminder_name(timeout["timeout_id"]),
                json.dumps(timeout, separators=(",", ":")).encode(),
                max(due_in, timedelta(0)),
                self.retry_period,
            )
            self.reminded[timeout["timeout_id"]] = timeout

        return remind

    def _forgetting(self, timeout: dict[str, Any]) -> Callable[[], Any]:
        async def forget() -> None:
            await self.reminders.unregister(
                TIMEOUT_ACTOR_TYPE,
                timeout_actor_id(self.name, timeout["stream"]),
                reminder_name(timeout["timeout_id"]),
            )
            self.reminded.pop(timeout["timeout_id"], None)

        return forget

    def dump(self) -> dict[str, Any]:
        return {**super().dump(), "reminded": list(self.reminded.values())}

    def load(self, data: dict[str, Any]) -> None:
        super().load(data)
        self.reminded = {t["timeout_id"]: t for t in data.get("reminded", [])}


def dapr_reaction_runner(
    executor: SekibanExecutor,
    *hosted: Hosted,
    reminders: Reminders | None = None,
    retry_period: timedelta = RETRY_PERIOD,
    **options: Any,
) -> ReactionRunner:
    """A `ReactionRunner` whose process managers' timeouts are Dapr reminders.

    Reactions and outbox dispatchers run as under any runner; each `ProcessManager`
    runs as a `DaprTimeoutSubscriber` registering its reminders through `reminders`
    (default: `DaprReminders()`, this process's sidecar). `options` go to the runner.
    The actor apps must host the same process managers
    (`create_actor_app(..., process_managers=...)`) to fire them.
    """
    client = reminders if reminders is not None else DaprReminders()
    subscribers: list[Hosted] = [
        DaprTimeoutSubscriber(item, client, retry_period=retry_period)
        if isinstance(item, ProcessManager)
        else item
        for item in hosted
    ]
    return ReactionRunner(executor, *subscribers, **options)


class ProcessTimeoutActorInterface(ActorInterface):
    """The timeout actor has no methods to call: only reminders reach it."""


class ProcessTimeoutActor(Actor, ProcessTimeoutActorInterface, Remindable):
    """Fires the timeouts of one process (id `timeout_actor_id`) when their reminders
    come due, on whichever instance Dapr placed it, then unregisters them.

    An error in the step propagates (daprd logs the failed reminder); the reminder
    fires again after its period and the step is retried, at most once in effect.
    """

    def __init__(
        self,
        ctx: ActorRuntimeContext,
        actor_id: ActorId,
        *,
        subscribers: Mapping[str, ProcessSubscriber],
        host: Host,
    ) -> None:
        super().__init__(ctx, actor_id)
        process_name, separator, self.stream = actor_id.id.partition(_ID_SEPARATOR)
        subscriber = subscribers.get(process_name)
        if not separator or subscriber is None:
            raise ConfigurationError(
                f"no process manager {process_name!r} is hosted here (actor {actor_id.id!r}); "
                f"pass it to create_actor_app(process_managers=...). Hosted: {sorted(subscribers)}"
            )
        self.subscriber = subscriber
        self.host = host

    async def receive_reminder(
        self,
        name: str,
        state: bytes,
        due_time: timedelta,
        period: timedelta,
        ttl: timedelta | None = None,
    ) -> None:
        timeout: dict[str, Any] = json.loads(state)
        if timeout.get("stream") != self.stream or name != reminder_name(timeout["timeout_id"]):
            # Not one this actor scheduled: never step another process's stream.
            log.error("actor %s dropped reminder %s for %s", self.id, name, timeout.get("stream"))
        else:
            await self.subscriber.fire_timeout(timeout, self.host)
        await self.unregister_reminder(name)


ActorFactory = Callable[[ActorRuntimeContext, ActorId], Actor]


def timeout_actor_factory(
    executor: SekibanExecutor, process_managers: Sequence[ProcessManager[Any]]
) -> ActorFactory:
    """What `register_actor(actor_factory=...)` calls to build each timeout actor; the
    steps run through `executor` (the app's event store)."""
    subscribers = {p.name: ProcessSubscriber(p) for p in process_managers}
    host = ExecutorHost(executor)

    def create(ctx: ActorRuntimeContext, actor_id: ActorId) -> Actor:
        return ProcessTimeoutActor(ctx, actor_id, subscribers=subscribers, host=host)

    return create
