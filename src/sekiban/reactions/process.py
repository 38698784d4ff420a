"""Process managers (sagas): long-running processes keyed by a correlation, with their
own event-sourced state, that react to events of many aggregates by sending commands,
recording side effects and scheduling timeouts.

A process's stream (group `ProcessManager.group`, one stream per key) is an aggregate
like any other, so it is loaded through snapshots. Each step (an event handled, a
timeout fired) is one commit to it, holding the process's own events and everything it
decided: `CommandRequested`, `SideEffectRequested`, `TimeoutScheduled`/`Cancelled`,
`ProcessCompleted`. Only after that commit are the commands sent, each under an id
derived from its `CommandRequested` event, so a crash anywhere re-sends nothing twice.
"""

from __future__ import annotations

import inspect
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, PrivateAttr

from sekiban.core.aggregate import AggregatePayload
from sekiban.core.command import Command, CommandContext, CommandResponse, HandlerResult
from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.core.partition_keys import PartitionKeys, validate_name
from sekiban.core.projector import AggregateProjector, _kebab
from sekiban.errors import ConfigurationError, InvalidPartitionKeysError
from sekiban.reactions.events import (
    CommandRequested,
    ProcessCompleted,
    ProcessStarted,
    ProcessState,
    SideEffectRequested,
    TimeoutCancelled,
    TimeoutFired,
    TimeoutScheduled,
)
from sekiban.reactions.reaction import SideEffect, check_name, derived_id
from sekiban.reactions.subscriber import DueWork, Host, caused_metadata, command_envelope, send

S = TypeVar("S", bound=BaseModel)

_NAMESPACE = uuid.UUID("0c7d8a52-4b0e-4f0e-9d55-2f1c6a1e9b07")


@dataclass(frozen=True, slots=True)
class Timeout:
    """Wake the process `after` this long (from the step's clock time) unless cancelled
    first (by name), with `data` handed back to `on_timeout`."""

    name: str
    after: timedelta
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """What a process decides for one event or timeout, all committed together: its
    own `events` (folded by `apply`), the `commands` to send, the `side_effects` to
    deliver, timeouts to `schedule` and to `cancel` (by name), and whether it is
    `complete` (it then ignores later events, and its pending timeouts are void)."""

    events: Sequence[EventPayload] = ()
    commands: Sequence[Command] = ()
    side_effects: Sequence[SideEffect] = ()
    schedule: Sequence[Timeout] = ()
    cancel: Sequence[str] = ()
    complete: bool = False


@dataclass(frozen=True, slots=True)
class FiredTimeout:
    """A timeout that came due, as `on_timeout` receives it."""

    timeout_id: str
    name: str
    due_at: datetime
    data: dict[str, Any]


class ProcessManager(ABC, Generic[S]):
    """A saga: state per correlation key, stepped by events and timeouts.

    Declare what it reads with `groups`/`event_types` (as on a reaction); `correlate`
    names the process an event belongs to (None: not this process's business). The
    state is a pydantic model: `initial_state`, then `apply` folds the process's own
    events into it. `handle` and `on_timeout` decide a `Step` (None: nothing). Both are
    decided on the process's state at one version and committed with a command id
    derived from the event (or timeout), so a re-delivered event is never stepped twice.
    Bump `version` when `apply` changes (its snapshots are then rebuilt).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    group: ClassVar[str] = ""
    groups: ClassVar[Collection[str] | None] = None
    event_types: ClassVar[Collection[type[EventPayload]] | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _kebab(cls.__name__)
        check_name(cls.name)
        if not cls.__dict__.get("group"):
            cls.group = cls.name
        try:
            validate_name(cls.group, "group")
        except InvalidPartitionKeysError as error:
            raise ConfigurationError(
                f"{cls.__name__}.group names its streams' partition-key group: {error}"
            ) from None

    @abstractmethod
    def correlate(self, event: Event[EventPayload]) -> str | None:
        """The key of the process `event` belongs to, or None to ignore it."""

    @abstractmethod
    def initial_state(self) -> S:
        """The state of a process before its first step."""

    def apply(self, state: S, event: EventPayload) -> S:
        """The state after one of the process's own events (default: unchanged)."""
        return state

    @abstractmethod
    def handle(
        self, state: S, event: Event[EventPayload], now: datetime
    ) -> Step | Awaitable[Step | None] | None:
        """What the process does because of `event`."""

    def on_timeout(
        self, state: S, timeout: FiredTimeout, now: datetime
    ) -> Step | Awaitable[Step | None] | None:
        """What the process does when `timeout` came due (default: nothing)."""
        return None

    def keys(self, key: str) -> PartitionKeys:
        """The stream of the process with `key`."""
        return PartitionKeys(uuid.uuid5(_NAMESPACE, f"{self.name}:{key}"), self.group)

    def state_of(self, payload: AggregatePayload) -> S:
        """The process's own state inside its aggregate payload."""
        initial = self.initial_state()
        if not isinstance(payload, ProcessState):
            return initial
        return type(initial).model_validate(payload.data)

    def projector(self) -> ProcessProjector:
        """The projector of this process's streams."""
        return ProcessProjector(self)


class ProcessProjector(AggregateProjector):
    """Folds a process's stream into a `ProcessState`; named `process-<name>`."""

    def __init__(self, process: ProcessManager[Any]) -> None:
        self.process = process
        # A projector's name and version are class attributes elsewhere; one instance
        # per process manager keeps each process's snapshots apart.
        self.name = f"process-{process.name}"  # type: ignore[misc]
        self.version = process.version  # type: ignore[misc]

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        p = event.payload
        if isinstance(p, ProcessStarted):
            initial = self.process.initial_state().model_dump(mode="json")
            return ProcessState(process=p.process, key=p.key, data=initial)
        if not isinstance(payload, ProcessState):
            return payload
        if isinstance(p, TimeoutScheduled):
            return payload.evolve(timeouts={**payload.timeouts, p.timeout_id: p})
        if isinstance(p, (TimeoutCancelled, TimeoutFired)):
            rest = {k: v for k, v in payload.timeouts.items() if k != p.timeout_id}
            return payload.evolve(timeouts=rest)
        if isinstance(p, ProcessCompleted):
            return payload.evolve(completed=True, timeouts={})
        if isinstance(p, (CommandRequested, SideEffectRequested)):
            return payload
        state = self.process.apply(self.process.state_of(payload), p)
        return payload.evolve(data=state.model_dump(mode="json"))


Decide = Callable[[CommandContext[AggregatePayload]], Awaitable[list[EventPayload]]]


class ProcessStep(Command):
    """One step of a process, run through the executor's commit path (conflict retries,
    at most once per command id); built by the runner, never sent by users."""

    stream: str
    _decide: Decide | None = PrivateAttr(default=None)

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.parse(self.stream)

    async def handle(self, context: CommandContext[AggregatePayload]) -> HandlerResult:
        assert self._decide is not None
        return await self._decide(context)


class ProcessSubscriber:
    """Runs a `ProcessManager` under a `ReactionRunner`: steps processes for the events
    it reads, sends what they decided, and fires their timeouts once due.

    It also reads its own streams' timeout events, keeping the pending timeouts of every
    process in its checkpoint, so timeouts survive a restart without a scan.
    """

    def __init__(self, process: ProcessManager[Any]) -> None:
        self.process = process
        self.name = process.name
        self.projector = process.projector()
        own: tuple[type[EventPayload], ...] = (
            TimeoutScheduled,
            TimeoutCancelled,
            TimeoutFired,
            ProcessCompleted,
        )
        self.groups: Collection[str] | None = (
            None if process.groups is None else {*process.groups, process.group}
        )
        self.event_types: Collection[type[EventPayload]] | None = (
            None if process.event_types is None else {*process.event_types, *own}
        )
        self.timeouts: dict[str, dict[str, Any]] = {}

    async def handle(self, event: Event[EventPayload], host: Host) -> None:
        keys = event.partition_keys
        if keys.group == self.process.group:
            self._track(event)
            return
        if self.process.groups is not None and keys.group not in self.process.groups:
            return
        if self.process.event_types is not None and not isinstance(
            event.payload, tuple(self.process.event_types)
        ):
            return
        key = self.process.correlate(event)
        if key is None:
            return
        trigger = str(event.id)

        async def decide(context: CommandContext[AggregatePayload]) -> list[EventPayload]:
            payload = context.payload
            if isinstance(payload, ProcessState) and payload.completed:
                return []  # a completed process ignores later events
            started = [] if context.version else [ProcessStarted(process=self.name, key=key)]
            state = self.process.state_of(context.payload)
            step = self.process.handle(state, event, host.now())
            return await self._decisions(context, started, step, trigger, host)

        metadata = caused_metadata(event, derived_id(self.name, trigger, "step"), self.name)
        await self._step(self.process.keys(key), decide, metadata, host)

    def due(self, now: datetime, host: Host) -> list[DueWork]:
        due = sorted(
            (t for t in self.timeouts.values() if datetime.fromisoformat(t["due_at"]) <= now),
            key=lambda t: t["due_at"],
        )
        return [DueWork(f"timeout {t['timeout_id']}", self._firing(t, host)) for t in due]

    def _firing(self, timeout: dict[str, Any], host: Host) -> Callable[[], Awaitable[None]]:
        timeout_id: str = timeout["timeout_id"]

        async def decide(context: CommandContext[AggregatePayload]) -> list[EventPayload]:
            payload = context.payload
            if not isinstance(payload, ProcessState) or payload.completed:
                return []
            scheduled = payload.timeouts.get(timeout_id)
            if scheduled is None:
                return []  # cancelled (or fired) since the index saw it scheduled
            fired = [TimeoutFired(timeout_id=timeout_id, name=scheduled.name)]
            due = FiredTimeout(timeout_id, scheduled.name, scheduled.due_at, scheduled.data)
            step = self.process.on_timeout(self.process.state_of(payload), due, host.now())
            return await self._decisions(context, fired, step, timeout_id, host)

        async def fire() -> None:
            command_id = derived_id(self.name, timeout_id, "fire")
            metadata = EventMetadata(command_id, timeout["correlation_id"], f"sekiban:{self.name}")
            await self._step(PartitionKeys.parse(timeout["stream"]), decide, metadata, host)
            self.timeouts.pop(timeout_id, None)

        return fire

    async def _decisions(
        self,
        context: CommandContext[AggregatePayload],
        first: Sequence[EventPayload],
        decided: Step | Awaitable[Step | None] | None,
        trigger: str,
        host: Host,
    ) -> list[EventPayload]:
        step = await decided if inspect.isawaitable(decided) else decided
        if step is None:
            return list(first) if context.version else []  # no step: no process started
        payload = context.payload
        pending = payload.timeouts if isinstance(payload, ProcessState) else {}
        events: list[EventPayload] = [*first, *step.events]
        events += [
            CommandRequested(command=command_envelope(host.serializer, c)) for c in step.commands
        ]
        events += [
            SideEffectRequested(
                effect_id=derived_id(self.name, trigger, f"effect-{n}"), kind=e.kind, data=e.data
            )
            for n, e in enumerate(step.side_effects)
        ]
        cancelled = set(step.cancel)
        events += [
            TimeoutCancelled(timeout_id=t.timeout_id, name=t.name)
            for t in pending.values()
            if t.name in cancelled
        ]
        now = host.now()
        events += [
            TimeoutScheduled(
                timeout_id=str(uuid.uuid5(_NAMESPACE, f"{self.name}:{trigger}:{n}")),
                name=t.name,
                due_at=now + t.after,
                data=t.data,
            )
            for n, t in enumerate(step.schedule)
        ]
        if step.complete:
            events.append(ProcessCompleted())
        return events

    async def _step(
        self, keys: PartitionKeys, decide: Decide, metadata: EventMetadata, host: Host
    ) -> None:
        """Commit one step (once per command id) and send the commands it recorded."""
        command = ProcessStep(stream=str(keys))
        command._decide = decide
        response = await self._commit(command, metadata, host)
        for event in response.events:
            if isinstance(event.payload, CommandRequested):
                sent = host.serializer.command_from_envelope(event.payload.command)
                command_id = derived_id(self.name, str(event.id), 0)
                await send(host.executor, sent, caused_metadata(event, command_id, self.name))
            else:
                self._track(event)

    async def _commit(
        self, command: ProcessStep, metadata: EventMetadata, host: Host
    ) -> CommandResponse:
        executor = host.executor
        repository = executor.repository
        state = await repository.load(self.projector, command.partition_keys())
        response, _ = await repository.execute_with_retry(
            self.projector, command, state, metadata, executor.conflict_retry
        )
        return response

    def _track(self, event: Event[EventPayload]) -> None:
        """Keep the pending-timeouts index in step with the process streams' events."""
        p = event.payload
        if isinstance(p, TimeoutScheduled):
            self.timeouts.setdefault(
                p.timeout_id,
                {
                    "timeout_id": p.timeout_id,
                    "name": p.name,
                    "stream": str(event.partition_keys),
                    "due_at": p.due_at.isoformat(),
                    "correlation_id": event.metadata.correlation_id,
                },
            )
        elif isinstance(p, (TimeoutCancelled, TimeoutFired)):
            self.timeouts.pop(p.timeout_id, None)
        elif isinstance(p, ProcessCompleted):
            stream = str(event.partition_keys)
            self.timeouts = {k: t for k, t in self.timeouts.items() if t["stream"] != stream}

    def dump(self) -> dict[str, Any]:
        return {"timeouts": list(self.timeouts.values())}

    def load(self, data: dict[str, Any]) -> None:
        self.timeouts = {t["timeout_id"]: t for t in data.get("timeouts", [])}
