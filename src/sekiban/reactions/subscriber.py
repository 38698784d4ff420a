"""What a `ReactionRunner` hosts: the `Subscriber` protocol, and the subscriber that runs
a `Reaction` (sending its commands, recording its side effects)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sekiban.core.command import Command, CommandResponse
from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.core.serialization import Serializer
from sekiban.errors import DuplicateCommandError
from sekiban.executor import SekibanExecutor
from sekiban.reactions.outbox import RequestSideEffect
from sekiban.reactions.reaction import Reaction, SideEffect, derived_id, split_result


@dataclass(frozen=True, slots=True)
class DueWork:
    """Work that came due without an event (a timeout, a delivery): `label` names it in
    a parked record; `run` does it (raising: retried, then parked)."""

    label: str
    run: Callable[[], Awaitable[None]]


class Host(Protocol):
    """What subscribers use of the runner hosting them."""

    executor: SekibanExecutor
    serializer: Serializer

    def now(self) -> datetime: ...


class Subscriber(Protocol):
    """One consumer of the global event order, with a checkpoint named `reaction:<name>`.

    `groups`/`event_types` select the events `handle` gets (as on a multi-projector);
    `due` lists work that is due at a time; `dump`/`load` carry whatever the subscriber
    keeps between events (JSON) through its checkpoint.
    """

    @property
    def name(self) -> str: ...

    @property
    def groups(self) -> Collection[str] | None: ...

    @property
    def event_types(self) -> Collection[type[EventPayload]] | None: ...

    async def handle(self, event: Event[EventPayload], host: Host) -> None: ...

    def due(self, now: datetime, host: Host) -> list[DueWork]: ...

    def dump(self) -> dict[str, Any]: ...

    def load(self, data: dict[str, Any]) -> None: ...


def caused_metadata(event: Event[EventPayload], command_id: str, source: str) -> EventMetadata:
    """Metadata for a command `event` caused: its correlation id carried on, the command
    id as causation id, and the reacting `source` as the executing user."""
    correlation = event.metadata.correlation_id or str(event.id)
    return EventMetadata(command_id, correlation, f"sekiban:{source}")


async def send(
    executor: SekibanExecutor, command: Command, metadata: EventMetadata
) -> CommandResponse | None:
    """Send `command` under `metadata.causation_id`, at most once: a duplicate the store
    refused counts as sent (None)."""
    try:
        return await executor.command(command, metadata)
    except DuplicateCommandError:
        return None  # applied by an earlier delivery


class ReactionSubscriber:
    """Runs a `Reaction`: each command it returns is sent with the id
    `derived_id(name, event id, n)`, each side effect requested in its own outbox
    stream under the effect id `derived_id(name, event id, "effect-n")`."""

    def __init__(self, reaction: Reaction) -> None:
        self.reaction = reaction
        self.name = reaction.name
        self.groups = reaction.groups
        self.event_types = reaction.event_types

    async def handle(self, event: Event[EventPayload], host: Host) -> None:
        result: Any = self.reaction.react(event)
        if inspect.isawaitable(result):
            result = await result
        commands, effects = split_result(f"{type(self.reaction).__name__}.react", result)
        trigger = str(event.id)
        for n, command in enumerate(commands):
            command_id = derived_id(self.name, trigger, n)
            await send(host.executor, command, caused_metadata(event, command_id, self.name))
        await request_effects(host, event, self.name, trigger, effects)

    def due(self, now: datetime, host: Host) -> list[DueWork]:
        return []

    def dump(self) -> dict[str, Any]:
        return {}

    def load(self, data: dict[str, Any]) -> None:
        return None


async def request_effects(
    host: Host, event: Event[EventPayload], source: str, trigger: str, effects: Sequence[SideEffect]
) -> None:
    """Record `effects` as pending, each once, in its own outbox stream."""
    for n, effect in enumerate(effects):
        effect_id = derived_id(source, trigger, f"effect-{n}")
        command = RequestSideEffect(effect_id=effect_id, kind=effect.kind, data=effect.data)
        await send(host.executor, command, caused_metadata(event, f"outbox:{effect_id}", source))


def command_envelope(serializer: Serializer, command: Command) -> dict[str, Any]:
    """`command` as a JSON-ready `{"type": ..., "payload": ...}` envelope."""
    envelope: dict[str, Any] = json.loads(serializer.dump_command(command))
    return envelope
