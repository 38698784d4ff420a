"""Limits per command, on the single-process executor and on the in-process actor host:
payloads in UTF-8 bytes, events per command and bytes per command; each a typed error
with nothing written."""

from __future__ import annotations

import uuid

import pytest

from sekiban import (
    AggregatePayload,
    AggregateProjector,
    Command,
    CommandContext,
    CommandLimits,
    CommandTooLargeError,
    ConfigurationError,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    Executor,
    PartitionKeys,
    PayloadTooLargeError,
    RemoteCommandError,
    SekibanError,
    SekibanExecutor,
    TooManyEventsError,
)
from sekiban.stores import InMemoryEventStore
from sekiban.testing.actors import ActorHarness


class Noted(EventPayload):
    text: str


class Notes(AggregatePayload):
    count: int = 0


class NotesProjector(AggregateProjector):
    name = "notes"
    version = "1"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        count = payload.count if isinstance(payload, Notes) else 0
        return Notes(count=count + 1)


class WriteNotes(Command):
    projector = NotesProjector
    required_payload = (EmptyAggregatePayload, Notes)

    texts: list[str]
    notebook: uuid.UUID

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.notebook, NotesProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        return [Noted(text=t) for t in self.texts]


def domain() -> DomainTypes:
    return DomainTypes(Noted, Notes, NotesProjector, WriteNotes)


def executors(store: InMemoryEventStore, limits: CommandLimits) -> list[Executor]:
    return [
        SekibanExecutor(domain(), store, limits=limits),
        ActorHarness(domain(), store, limits=limits),
    ]


HOSTS = ["executor", "actor"]


def host(name: str, store: InMemoryEventStore, limits: CommandLimits) -> Executor:
    return executors(store, limits)[HOSTS.index(name)]


async def refused(executor: Executor, command: Command) -> tuple[str, str]:
    """The name of the error `command` is refused with (the actor host sends it back
    as a `RemoteCommandError` naming it), and its message."""
    with pytest.raises(SekibanError) as raised:
        await executor.command(command)
    error = raised.value
    name = error.error_type if isinstance(error, RemoteCommandError) else type(error).__name__
    return name, str(error)


async def written(store: InMemoryEventStore) -> int:
    return len([e async for b in store.read_all() for e in b])


@pytest.mark.parametrize("name", HOSTS)
async def test_payload_size_is_counted_in_utf8_bytes(name: str) -> None:
    store = InMemoryEventStore()
    # '{"text":"…"}' is 11 bytes of JSON around the text; 30 four-byte characters are
    # 30 characters but 120 bytes.
    executor = host(name, store, CommandLimits(max_payload_bytes=100))
    notebook = uuid.uuid4()
    name_, message = await refused(executor, WriteNotes(texts=["🙂" * 30], notebook=notebook))
    assert name_ == PayloadTooLargeError.__name__ and "131 bytes" in message
    assert await written(store) == 0
    await executor.command(WriteNotes(texts=["x" * 89], notebook=notebook))  # 100 bytes
    assert await written(store) == 1


@pytest.mark.parametrize("name", HOSTS)
async def test_more_events_than_the_limit_is_refused_with_nothing_written(name: str) -> None:
    store = InMemoryEventStore()
    executor = host(name, store, CommandLimits(max_events=3))
    notebook = uuid.uuid4()
    name_, message = await refused(executor, WriteNotes(texts=["a"] * 4, notebook=notebook))
    assert name_ == TooManyEventsError.__name__ and "4 events" in message
    assert await written(store) == 0
    await executor.command(WriteNotes(texts=["a"] * 3, notebook=notebook))
    assert await written(store) == 3


@pytest.mark.parametrize("name", HOSTS)
async def test_more_bytes_per_command_than_the_limit_is_refused(name: str) -> None:
    store = InMemoryEventStore()
    executor = host(name, store, CommandLimits(max_command_bytes=1000))
    notebook = uuid.uuid4()
    # 10 events of 111 bytes each: every payload is fine, the command is not.
    name_, message = await refused(executor, WriteNotes(texts=["é" * 50] * 10, notebook=notebook))
    assert name_ == CommandTooLargeError.__name__ and "1110 bytes" in message
    assert await written(store) == 0


async def test_the_executor_raises_the_typed_errors_themselves() -> None:
    executor = SekibanExecutor(domain(), limits=CommandLimits(max_events=1, max_command_bytes=20))
    notebook = uuid.uuid4()
    with pytest.raises(TooManyEventsError) as many:
        await executor.command(WriteNotes(texts=["a", "b"], notebook=notebook))
    assert (many.value.command_type, many.value.count, many.value.limit) == ("WriteNotes", 2, 1)
    with pytest.raises(CommandTooLargeError) as large:
        await executor.command(WriteNotes(texts=["ü" * 10], notebook=notebook))
    assert (large.value.size, large.value.limit) == (31, 20)


async def test_default_limits_are_1000_events_and_4_mib() -> None:
    limits = CommandLimits()
    assert (limits.max_events, limits.max_command_bytes) == (1000, 4 * 1024 * 1024)
    executor = SekibanExecutor(domain())
    with pytest.raises(TooManyEventsError):
        await executor.command(WriteNotes(texts=["a"] * 1001, notebook=uuid.uuid4()))
    with pytest.raises(CommandTooLargeError):
        await executor.command(WriteNotes(texts=["a" * 1_000_000] * 5, notebook=uuid.uuid4()))


@pytest.mark.parametrize("field", ["max_payload_bytes", "max_events", "max_command_bytes"])
def test_limits_below_one_are_a_configuration_error(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        CommandLimits(**{field: 0})  # type: ignore[arg-type]
