"""What `sekiban reactions status` shows: each subscriber's lag and parked items (from
its checkpoint) and the outbox's pending, failed and dead-lettered side effects (from
the events themselves, so it needs no checkpoint and no domain)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sekiban.core.domain_types import DomainTypes
from sekiban.core.schema import parse_stored_event_type
from sekiban.core.serialization import Serializer
from sekiban.executor import SekibanExecutor
from sekiban.projections.store import ProjectionStore
from sekiban.reactions.events import SIDE_EFFECT_EVENTS
from sekiban.reactions.outbox import EffectStatus, OutboxIndex, RetrySideEffect
from sekiban.reactions.registry import REACTION_TYPES
from sekiban.reactions.runner import RECORD_PREFIX, read_checkpoint
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, EventStore


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    """One subscriber's checkpoint: its position, how far the store is ahead of it, and
    what it parked."""

    name: str
    position: int
    lag: int
    parked: list[dict[str, Any]]
    saved_at: datetime


@dataclass(slots=True)
class ReactionsStatus:
    """Every reaction checkpoint, and every side effect not yet delivered."""

    head: int = 0
    checkpoints: list[CheckpointStatus] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    undelivered: list[EffectStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "checkpoints": [
                {
                    "name": c.name,
                    "position": c.position,
                    "lag": c.lag,
                    "parked": c.parked,
                    "saved_at": c.saved_at.isoformat(),
                }
                for c in self.checkpoints
            ],
            "outbox": self.outbox,
            "undelivered": [i.to_dict() for i in self.undelivered],
        }


async def reactions_status(
    event_store: EventStore,
    checkpoints: ProjectionStore | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ReactionsStatus:
    """Read the store once: the outbox folded from its events, the head position, and
    each `reaction:` checkpoint's lag behind that head."""
    # Only the framework's own event types are decoded: any domain's store will do.
    serializer = Serializer(DomainTypes(*REACTION_TYPES))
    names = {serializer.domain.event_name(t) for t in SIDE_EFFECT_EVENTS}
    index = OutboxIndex()
    status = ReactionsStatus()
    async for batch in event_store.read_all(0, batch_size):
        for stored in batch:
            status.head = stored.position or status.head
            if parse_stored_event_type(stored.event_type)[0] in names:
                index.apply(serializer.to_event(stored))
    status.outbox = index.counts()
    status.undelivered = sorted(index.items.values(), key=lambda i: i.effect_id)
    if checkpoints is not None:
        for name in await checkpoints.names():
            record = await checkpoints.get(name) if name.startswith(RECORD_PREFIX) else None
            if record is None or record.payload is None:
                continue
            data = read_checkpoint(record)
            status.checkpoints.append(
                CheckpointStatus(
                    name.removeprefix(RECORD_PREFIX),
                    record.position,
                    max(status.head - record.position, 0),
                    list(data.get("parked", [])),
                    record.taken_at,
                )
            )
    return status


def dumps(status: ReactionsStatus) -> str:
    """The status as indented JSON."""
    return json.dumps(status.to_dict(), indent=2)


async def retry_dead_letters(
    event_store: EventStore, effect_ids: list[str] | None = None
) -> list[str]:
    """Revive dead-lettered side effects (all of them when `effect_ids` is None): each
    gets a `SideEffectRetryRequested`, and the next dispatcher round delivers it again.
    The ids revived; ids that are not dead-lettered are left alone."""
    status = await reactions_status(event_store)
    dead = [i.effect_id for i in status.undelivered if i.status == "dead-lettered"]
    chosen = dead if effect_ids is None else [i for i in effect_ids if i in dead]
    executor = SekibanExecutor(DomainTypes(*REACTION_TYPES), event_store)
    for effect_id in chosen:
        await executor.command(RetrySideEffect(effect_id=effect_id))
    return chosen
