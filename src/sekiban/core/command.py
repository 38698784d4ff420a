"""Commands: validated requests that decide which events happen to one aggregate."""

from __future__ import annotations

import inspect
import uuid
from abc import abstractmethod
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, replace
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import Clock
from sekiban.core.events import Event, EventMetadata, EventPayload, new_event_id, rebuild_event
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.errors import (
    AggregateStateError,
    CommandIdMismatchError,
    InvalidHandlerResultError,
    InvalidPartitionKeysError,
)

T = TypeVar("T", bound=AggregatePayload, covariant=True)

HandlerResult = EventPayload | Iterable[EventPayload] | None


@dataclass(frozen=True, slots=True)
class CommandContext(Generic[T]):
    """What a command handler may look at: the aggregate as it stands."""

    aggregate: Aggregate[T]

    @property
    def payload(self) -> T:
        return self.aggregate.payload

    @property
    def partition_keys(self) -> PartitionKeys:
        return self.aggregate.partition_keys

    @property
    def version(self) -> int:
        return self.aggregate.version


class Command(BaseModel):
    """Base of every command: its fields are validated when it is built.

    Subclasses set `projector` (the aggregate the command targets), optionally
    `required_payload` (the states it may be applied to), and implement
    `partition_keys` and `handle`. `handle` returns zero or more event payloads and
    may be `async`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    projector: ClassVar[type[AggregateProjector]]
    required_payload: ClassVar[tuple[type[AggregatePayload], ...]] = ()

    @abstractmethod
    def partition_keys(self) -> PartitionKeys:
        """The aggregate this command is for."""

    @abstractmethod
    def handle(
        self, context: CommandContext[AggregatePayload]
    ) -> HandlerResult | Awaitable[HandlerResult]:
        """Decide the events; raise to reject the command."""


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """The outcome of a command: its aggregate, the events appended, the new version."""

    partition_keys: PartitionKeys
    events: tuple[Event[EventPayload], ...]
    version: int

    @property
    def consistency_token(self) -> str:
        """`keys@version`: pass it as `query(..., after=token)` to read this command's
        own writes (see `sekiban.projections.ConsistencyToken`)."""
        return f"{self.partition_keys}@{self.version}"


def command_keys(command: Command) -> PartitionKeys:
    """The aggregate `command` targets; raises `InvalidPartitionKeysError` if its
    `partition_keys()` returns anything but `PartitionKeys`."""
    keys = command.partition_keys()
    if not isinstance(keys, PartitionKeys):
        raise InvalidPartitionKeysError(
            f"{type(command).__name__}.partition_keys() returned {keys!r}"
        )
    return keys


def command_metadata(
    metadata: EventMetadata | None, command_id: str | None = None
) -> EventMetadata:
    """`metadata` with the command's identity as causation id (`command_id`, else the
    one in `metadata`, else a fresh one) and a fresh correlation id where none was given.

    Raises `CommandIdMismatchError` when `command_id` and `metadata.causation_id` are
    both given and differ.
    """
    metadata = metadata or EventMetadata()
    if command_id:
        if metadata.causation_id and metadata.causation_id != command_id:
            raise CommandIdMismatchError(command_id, metadata.causation_id)
        metadata = replace(metadata, causation_id=command_id)
    if metadata.causation_id and metadata.correlation_id:
        return metadata
    return replace(
        metadata,
        causation_id=metadata.causation_id or str(uuid.uuid4()),
        correlation_id=metadata.correlation_id or str(uuid.uuid4()),
    )


async def decide(
    command: Command,
    aggregate: Aggregate[AggregatePayload],
    metadata: EventMetadata,
    clock: Clock,
) -> list[Event[EventPayload]]:
    """Run the handler and wrap its payloads in envelopes at the next versions.

    Raises `AggregateStateError` when the aggregate is not in a required state. Pure:
    reads nothing and writes nothing.
    """
    required = type(command).required_payload
    if required and not isinstance(aggregate.payload, required):
        raise AggregateStateError(type(command).__name__, required, type(aggregate.payload))
    result = command.handle(CommandContext(aggregate))
    if type(result) is not list and inspect.isawaitable(result):
        result = await result
    payloads = _as_payloads(type(command).__name__, result)
    now, keys, version = clock(), aggregate.partition_keys, aggregate.version
    ids = SortableUniqueId.generate_many(len(payloads))
    return [
        rebuild_event(new_event_id(), ids[i], version + i + 1, keys, payload, now, metadata)
        for i, payload in enumerate(payloads)
    ]


def _as_payloads(command_type: str, result: object) -> list[EventPayload]:
    if result is None:
        return []
    if isinstance(result, EventPayload):
        return [result]
    if type(result) is list and all(isinstance(p, EventPayload) for p in result):
        return result  # the usual case, without the slower check for any iterable
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes, BaseModel)):
        payloads = list(result)
        if all(isinstance(p, EventPayload) for p in payloads):
            return payloads
    raise InvalidHandlerResultError(
        f"{command_type}.handle must return event payloads, got {result!r}"
    )
