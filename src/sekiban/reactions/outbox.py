"""The outbox: side effects recorded as pending events (delivered by
`sekiban.reactions.dispatcher.OutboxDispatcher`), their outbox streams and their index.

A side effect is requested by a `SideEffectRequested` event, written in the same commit
as the decision that wants it (a process step) or under a command id derived from the
triggering event (a reaction), so it is recorded exactly once. Its delivery outcomes
are events of its own outbox stream (group `sekiban-outbox`, one stream per effect id),
so the outbox's status is read from the event store, like everything else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sekiban.core.aggregate import AggregatePayload
from sekiban.core.command import Command, CommandContext
from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.reactions.events import (
    OUTBOX_GROUP,
    OutboxItem,
    SideEffectAttemptFailed,
    SideEffectDeadLettered,
    SideEffectDelivered,
    SideEffectRequested,
    SideEffectRetryRequested,
)

_NAMESPACE = uuid.UUID("6f1c3f1e-93a5-4d8e-8a43-5d0f3e7b2c11")


def outbox_keys(effect_id: str) -> PartitionKeys:
    """The outbox stream of one side effect."""
    return PartitionKeys(uuid.uuid5(_NAMESPACE, effect_id), OUTBOX_GROUP)


class OutboxProjector(AggregateProjector):
    """Folds one side effect's outbox stream into an `OutboxItem`."""

    name = "sekiban-outbox"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        item = payload if isinstance(payload, OutboxItem) else None
        p = event.payload
        if isinstance(p, SideEffectRequested):
            return OutboxItem(effect_id=p.effect_id, kind=p.kind, data=p.data)
        if item is None:
            item = OutboxItem(effect_id=getattr(p, "effect_id", ""))
        if isinstance(p, SideEffectAttemptFailed):
            return item.evolve(attempts=p.attempt, last_error=p.error)
        if isinstance(p, SideEffectDelivered):
            return item.evolve(attempts=p.attempts, status="delivered")
        if isinstance(p, SideEffectDeadLettered):
            return item.evolve(status="dead-lettered", last_error=p.error)
        if isinstance(p, SideEffectRetryRequested):
            return item.evolve(status="pending", attempts=0)
        return item


class RequestSideEffect(Command):
    """Record a side effect as pending in its own outbox stream (once: a second request
    for the same effect id decides nothing)."""

    projector: ClassVar[type[AggregateProjector]] = OutboxProjector
    effect_id: str
    kind: str
    data: dict[str, Any] = {}

    def partition_keys(self) -> PartitionKeys:
        return outbox_keys(self.effect_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        if context.version:
            return []
        return [SideEffectRequested(effect_id=self.effect_id, kind=self.kind, data=self.data)]


class RecordDeliveryAttempt(Command):
    """Record one delivery attempt: delivered (`error` empty), failed with a retry at
    `retry_at`, or failed for the last time (`retry_at` None: dead-lettered)."""

    projector: ClassVar[type[AggregateProjector]] = OutboxProjector
    effect_id: str
    attempt: int
    error: str = ""
    retry_at: datetime | None = None

    def partition_keys(self) -> PartitionKeys:
        return outbox_keys(self.effect_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        item = context.payload
        if isinstance(item, OutboxItem) and item.status != "pending":
            return []  # delivered or dead-lettered meanwhile (another dispatcher)
        if not self.error:
            return [SideEffectDelivered(effect_id=self.effect_id, attempts=self.attempt)]
        failed = SideEffectAttemptFailed(
            effect_id=self.effect_id, attempt=self.attempt, error=self.error, retry_at=self.retry_at
        )
        if self.retry_at is not None:
            return [failed]
        dead = SideEffectDeadLettered(
            effect_id=self.effect_id, attempts=self.attempt, error=self.error
        )
        return [failed, dead]


class RetrySideEffect(Command):
    """Deliver a dead-lettered side effect again, with a fresh count of attempts.
    Decides nothing for an effect that is not dead-lettered."""

    projector: ClassVar[type[AggregateProjector]] = OutboxProjector
    effect_id: str

    def partition_keys(self) -> PartitionKeys:
        return outbox_keys(self.effect_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        item = context.payload
        if not isinstance(item, OutboxItem) or item.status != "dead-lettered":
            return []
        return [SideEffectRetryRequested(effect_id=self.effect_id)]


@dataclass(slots=True)
class EffectStatus:
    """What the outbox knows of one side effect, folded from its events in global order."""

    effect_id: str
    kind: str = ""
    data: dict[str, Any] | None = None
    correlation_id: str = ""
    attempts: int = 0
    revivals: int = 0
    status: str = "pending"
    error: str = ""
    retry_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect_id": self.effect_id,
            "kind": self.kind,
            "data": self.data,
            "correlation_id": self.correlation_id,
            "attempts": self.attempts,
            "revivals": self.revivals,
            "status": self.status,
            "error": self.error,
            "retry_at": None if self.retry_at is None else self.retry_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EffectStatus:
        retry_at = data.get("retry_at")
        return cls(
            **{**data, "retry_at": None if retry_at is None else datetime.fromisoformat(retry_at)}
        )


class OutboxIndex:
    """Every side effect not yet delivered, and how many were, folded from the outbox
    events in global order. Applying an event twice changes nothing."""

    def __init__(self) -> None:
        self.items: dict[str, EffectStatus] = {}
        self.delivered = 0

    def apply(self, event: Event[EventPayload]) -> None:
        p = event.payload
        effect_id: str = getattr(p, "effect_id", "")
        if isinstance(p, SideEffectRequested):
            item = self.items.setdefault(effect_id, EffectStatus(effect_id))
            item.kind, item.data = p.kind, dict(p.data)
            item.correlation_id = event.metadata.correlation_id
            return
        found = self.items.get(effect_id)
        if found is None:
            return  # delivered already, or requested before this index began
        item = found
        if isinstance(p, SideEffectAttemptFailed):
            item.attempts, item.error, item.retry_at = p.attempt, p.error, p.retry_at
        elif isinstance(p, SideEffectDelivered):
            del self.items[effect_id]
            self.delivered += 1
        elif isinstance(p, SideEffectDeadLettered):
            item.status, item.retry_at = "dead-lettered", None
        elif isinstance(p, SideEffectRetryRequested) and item.status == "dead-lettered":
            item.status, item.attempts, item.retry_at = "pending", 0, None
            item.revivals += 1

    def due(self, now: datetime) -> list[EffectStatus]:
        """The pending effects whose next attempt is due, oldest retry first."""
        due = [
            i
            for i in self.items.values()
            if i.status == "pending" and i.data is not None and (i.retry_at or now) <= now
        ]
        return sorted(due, key=lambda i: i.retry_at or now)

    def counts(self) -> dict[str, int]:
        """Side effects pending (never tried), failed (to be retried), dead-lettered and
        delivered."""
        counts = {"pending": 0, "failed": 0, "dead_lettered": 0, "delivered": self.delivered}
        for item in self.items.values():
            if item.status == "dead-lettered":
                counts["dead_lettered"] += 1
            elif item.attempts:
                counts["failed"] += 1
            else:
                counts["pending"] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [i.to_dict() for i in self.items.values()],
            "delivered": self.delivered,
        }

    def load(self, data: dict[str, Any]) -> None:
        self.items = {i["effect_id"]: EffectStatus.from_dict(i) for i in data.get("items", [])}
        self.delivered = int(data.get("delivered", 0))
