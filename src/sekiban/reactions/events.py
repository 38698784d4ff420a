"""The events and payloads reactions write: process (saga) bookkeeping and the outbox.

They are ordinary domain types: register `REACTION_TYPES` in the domain that hosts
reactions (`domain.register(*REACTION_TYPES)`), so they are stored, read back and
snapshotted like any other. Everything a reaction decided is in the event store, never
only in a checkpoint: a lost checkpoint costs re-reading, never a decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from sekiban.core.aggregate import AggregatePayload
from sekiban.core.events import EventPayload

OUTBOX_GROUP = "sekiban-outbox"
"""The partition-key group of outbox item streams (one stream per side effect)."""


class ProcessStarted(EventPayload):
    """The first event of a process manager's stream: which correlation it serves."""

    process: str
    key: str


class ProcessCompleted(EventPayload):
    """The process finished: its pending timeouts are void and it ignores later events."""


class CommandRequested(EventPayload):
    """A command the process decided to send, recorded in the same commit as the state
    change that decided it; sent with a command id derived from this event's id."""

    command: dict[str, Any]
    """The command as `{"type": registered name, "payload": {...}}`."""


class TimeoutScheduled(EventPayload):
    """A timeout the process is waiting for; fired by the runner once `due_at` passed."""

    timeout_id: str
    name: str
    due_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class TimeoutCancelled(EventPayload):
    """A pending timeout the process no longer waits for."""

    timeout_id: str
    name: str


class TimeoutFired(EventPayload):
    """The timeout came due and the process handled it (in this same commit)."""

    timeout_id: str
    name: str


class SideEffectRequested(EventPayload):
    """A side effect leaving the system (an HTTP call, a message), pending delivery by
    the outbox dispatcher. `effect_id` is stable: handlers use it to deduplicate."""

    effect_id: str
    kind: str
    data: dict[str, Any] = Field(default_factory=dict)


class SideEffectAttemptFailed(EventPayload):
    """One delivery attempt failed; the next is due at `retry_at` (None: dead-lettered)."""

    effect_id: str
    attempt: int
    error: str
    retry_at: datetime | None = None


class SideEffectDelivered(EventPayload):
    """The side effect's handler returned: delivered."""

    effect_id: str
    attempts: int


class SideEffectDeadLettered(EventPayload):
    """Delivery gave up after `attempts` failures; `sekiban reactions retry` revives it."""

    effect_id: str
    attempts: int
    error: str


class SideEffectRetryRequested(EventPayload):
    """An operator asked for a dead-lettered side effect to be delivered again."""

    effect_id: str


class ProcessState(AggregatePayload):
    """A process manager's aggregate: its own state (as JSON) and its pending timeouts."""

    process: str
    key: str
    data: dict[str, Any]
    timeouts: dict[str, TimeoutScheduled] = Field(default_factory=dict)
    completed: bool = False


class OutboxItem(AggregatePayload):
    """A side effect's delivery record: what to deliver and how it went so far."""

    effect_id: str
    kind: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    last_error: str = ""
    status: str = "pending"
    """"pending", "delivered" or "dead-lettered"."""


SIDE_EFFECT_EVENTS: tuple[type[EventPayload], ...] = (
    SideEffectRequested,
    SideEffectAttemptFailed,
    SideEffectDelivered,
    SideEffectDeadLettered,
    SideEffectRetryRequested,
)
TIMEOUT_EVENTS: tuple[type[EventPayload], ...] = (
    TimeoutScheduled,
    TimeoutCancelled,
    TimeoutFired,
    ProcessCompleted,
)
