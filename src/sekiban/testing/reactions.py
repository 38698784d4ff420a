"""Given/when/then for reactions and process managers, with a fake clock.

scenario = ReactionScenario(domain, OrderFulfilment())
await scenario.given(PlaceOrder(...))          # history, reacted to
await scenario.when(RecordPayment(...))        # what the test is about
scenario.then_commands(ConfirmOrder(...))      # what the reactions sent
await scenario.advance(timedelta(minutes=15))  # fire what came due
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sekiban.core.command import Command, CommandResponse
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.executor import SekibanExecutor
from sekiban.reactions.dispatcher import OutboxDispatcher, PendingEffect, SideEffectHandler
from sekiban.reactions.events import SideEffectRequested
from sekiban.reactions.reaction import SideEffect
from sekiban.reactions.runner import Hosted, ParkedItem, ReactionRunner
from sekiban.retry import RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.stores.memory import InMemoryEventStore
from sekiban.stores.protocols import EventStore
from sekiban.testing.scenario import append_events

START = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until told to move: `clock()` is the time."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class RecordingExecutor(SekibanExecutor):
    """A `SekibanExecutor` that remembers the commands sent through it (the ones
    reactions and processes send; a process's own steps are commits, not commands)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[Command, EventMetadata | None]] = []

    async def command(
        self,
        command: Command,
        metadata: EventMetadata | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandResponse:
        self.sent.append((command, metadata))
        return await super().command(command, metadata, command_id=command_id)


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


class ReactionScenario:
    """A test's store, executor and runner for reactions, processes and the outbox.

    `given` builds history (reactions run over it, what they sent is then forgotten);
    `when`/`when_events`/`advance` act; `then_*` check what the reactions did during the
    last act. Side effects are delivered to `handlers` (by kind) when given, else only
    recorded as requested. Handlers that fail are retried per `retry` without sleeping.
    """

    def __init__(
        self,
        domain: DomainTypes,
        *hosted: Hosted,
        event_store: EventStore | None = None,
        clock: FakeClock | None = None,
        handlers: Mapping[str, SideEffectHandler] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.clock = clock or FakeClock()
        self.executor = RecordingExecutor(
            domain,
            event_store or InMemoryEventStore(),
            snapshot_config=SnapshotConfiguration(strategy="none"),
            clock=self.clock,
        )
        self.delivered: list[PendingEffect] = []
        extra: list[Hosted] = []
        if handlers is not None:
            extra.append(OutboxDispatcher(handlers, retry=retry or RetryPolicy(attempts=3)))
        self.runner = ReactionRunner(
            self.executor,
            *hosted,
            *extra,
            retry=retry or RetryPolicy(attempts=3, jitter=False),
            clock=self.clock,
            sleep=_no_sleep,
        )
        self._mark = 0

    async def given(self, *commands: Command) -> list[CommandResponse]:
        """Run commands as history, then let the reactions react to it."""
        responses = [await self.executor.command(c) for c in commands]
        await self._react()
        return responses

    async def given_events(
        self, partition_keys: PartitionKeys, *payloads: EventPayload
    ) -> list[Event[EventPayload]]:
        """Append events to a stream as history, then let the reactions react to them."""
        events = await self._append(partition_keys, payloads)
        await self._react()
        return events

    async def when(self, *commands: Command) -> list[CommandResponse]:
        """Run the commands under test and let the reactions react."""
        await self._begin()
        responses = [await self.executor.command(c) for c in commands]
        self.executor.sent.clear()
        await self._react()
        return responses

    async def when_events(
        self, partition_keys: PartitionKeys, *payloads: EventPayload
    ) -> list[Event[EventPayload]]:
        """Append the events under test to a stream and let the reactions react."""
        await self._begin()
        events = await self._append(partition_keys, payloads)
        await self._react()
        return events

    async def advance(self, delta: timedelta) -> None:
        """Move the clock on and run what came due (timeouts, retried deliveries)."""
        await self._begin()
        self.clock.advance(delta)
        await self._react()

    def commands(self) -> list[Command]:
        """The commands the reactions sent during the last act."""
        return [c for c, _ in self.executor.sent]

    def then_commands(self, *expected: Command) -> list[Command]:
        """Assert the reactions sent exactly these commands, in order."""
        actual = self.commands()
        assert actual == list(expected), f"expected commands {list(expected)}, got {actual}"
        return actual

    def then_no_commands(self) -> None:
        self.then_commands()

    async def side_effects(self) -> list[SideEffect]:
        """The side effects requested during the last act."""
        return [
            SideEffect(kind=e.payload.kind, data=e.payload.data)
            for e in await self._events_since_mark()
            if isinstance(e.payload, SideEffectRequested)
        ]

    async def then_side_effects(self, *expected: SideEffect) -> list[SideEffect]:
        """Assert exactly these side effects were requested during the last act."""
        actual = await self.side_effects()
        assert actual == list(expected), f"expected side effects {list(expected)}, got {actual}"
        return actual

    def timeouts(self) -> list[tuple[str, datetime]]:
        """Every pending timeout (name, due at), soonest first."""
        pending = [
            (t["name"], datetime.fromisoformat(t["due_at"]))
            for status in self.runner.status()
            for t in status.state.get("timeouts", [])
        ]
        return sorted(pending, key=lambda t: t[1])

    def then_timeouts(self, *names: str) -> list[tuple[str, datetime]]:
        """Assert the pending timeouts have exactly these names (soonest first)."""
        pending = self.timeouts()
        actual = [name for name, _ in pending]
        assert actual == list(names), f"expected timeouts {list(names)}, got {actual}"
        return pending

    def parked(self) -> list[ParkedItem]:
        """Everything parked, by every subscriber."""
        return [p for status in self.runner.status() for p in status.parked]

    async def _react(self) -> None:
        await self.runner.run_until_idle()

    async def _begin(self) -> None:
        """Start an act: forget what earlier acts sent, remember where the store ends."""
        self.executor.sent.clear()
        self._mark = 0
        async for batch in self.executor.event_store.read_all(0):
            self._mark = batch[-1].position or self._mark

    async def _events_since_mark(self) -> list[Event[EventPayload]]:
        to_event = self.executor.repository.serializer.to_event
        store = self.executor.event_store
        return [to_event(s) async for batch in store.read_all(self._mark) for s in batch]

    async def _append(
        self, keys: PartitionKeys, payloads: tuple[EventPayload, ...]
    ) -> list[Event[EventPayload]]:
        return await append_events(self.executor, keys, payloads, self.clock())
