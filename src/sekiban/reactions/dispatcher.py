"""`OutboxDispatcher`: delivers recorded side effects with retries, backoff and a dead
letter after the last failed attempt; hosted by a `ReactionRunner`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.errors import NoSideEffectHandlerError
from sekiban.reactions.events import SIDE_EFFECT_EVENTS
from sekiban.reactions.outbox import EffectStatus, OutboxIndex, RecordDeliveryAttempt
from sekiban.reactions.subscriber import DueWork, Host, send
from sekiban.retry import RetryPolicy

DELIVERY_RETRY = RetryPolicy(
    attempts=5,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(minutes=5),
    backoff_factor=4.0,
    jitter=False,
)
"""Five attempts, 1 s, 4 s, 16 s and 64 s apart, then the dead letter."""


@dataclass(frozen=True, slots=True)
class PendingEffect:
    """A side effect as its handler receives it. `effect_id` is the same on every
    attempt: pass it on as an idempotency key where the receiver takes one."""

    effect_id: str
    kind: str
    data: Mapping[str, Any]
    correlation_id: str
    attempt: int


SideEffectHandler = Callable[[PendingEffect], Awaitable[object]]


class OutboxDispatcher:
    """Delivers recorded side effects through `handlers` (by kind), at least once.

    Hosted by a `ReactionRunner` (checkpoint `reaction:<name>`): it reads the outbox
    events in global order into its index, and on each `run_once` tries every due
    effect. A handler that returns delivered it; one that raises (or a kind with no
    handler) is tried again after `retry.delay_before(next attempt)`, and after
    `retry.attempts` failures the effect is dead-lettered (`SideEffectDeadLettered`)
    until `RetrySideEffect` (or `sekiban reactions retry`) revives it. Each outcome is
    an event, written under a command id derived from the effect id and attempt, so two
    dispatchers racing on one effect record one outcome. A crash after a handler
    returned and before its outcome was written delivers the effect again: receivers
    deduplicate on `effect_id`.
    """

    groups: Collection[str] | None = None
    event_types: Collection[type[EventPayload]] | None = SIDE_EFFECT_EVENTS

    def __init__(
        self,
        handlers: Mapping[str, SideEffectHandler],
        *,
        retry: RetryPolicy = DELIVERY_RETRY,
        name: str = "outbox",
    ) -> None:
        self.name = name
        self.handlers = dict(handlers)
        self.retry = retry
        self.index = OutboxIndex()

    async def handle(self, event: Event[EventPayload], host: Host) -> None:
        self.index.apply(event)

    def due(self, now: datetime, host: Host) -> list[DueWork]:
        return [
            DueWork(f"side effect {item.effect_id}", self._delivery(item, host))
            for item in self.index.due(now)
        ]

    def dump(self) -> dict[str, Any]:
        return self.index.to_dict()

    def load(self, data: dict[str, Any]) -> None:
        self.index.load(data)

    def _delivery(self, item: EffectStatus, host: Host) -> Callable[[], Awaitable[None]]:
        async def deliver() -> None:
            error = await self.deliver(item)
            outcome = self.outcome(item, error, host.now())
            command_id = f"outbox:{item.effect_id}:{item.revivals}:{outcome.attempt}"
            metadata = EventMetadata(command_id, item.correlation_id, f"sekiban:{self.name}")
            response = await send(host.executor, outcome, metadata)
            for event in response.events if response is not None else ():
                self.index.apply(event)

        return deliver

    async def deliver(self, item: EffectStatus) -> str:
        """Run the effect's handler once; the error as text ("" when delivered)."""
        handler = self.handlers.get(item.kind)
        effect = PendingEffect(
            item.effect_id,
            item.kind,
            dict(item.data or {}),
            item.correlation_id,
            item.attempts + 1,
        )
        try:
            if handler is None:
                raise NoSideEffectHandlerError(item.kind, sorted(self.handlers))
            await handler(effect)
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return ""

    def outcome(self, item: EffectStatus, error: str, now: datetime) -> RecordDeliveryAttempt:
        """The command recording one attempt's outcome (with the next attempt's time)."""
        attempt = item.attempts + 1
        retry_at = None
        if error and self.retry.retries_left(attempt):
            retry_at = now + self.retry.delay_before(attempt + 1)
        return RecordDeliveryAttempt(
            effect_id=item.effect_id, attempt=attempt, error=error, retry_at=retry_at
        )
