"""Reactions: events that cause commands and side effects, exactly once in effect.

- `Reaction`: stateless, "when this event happens, send these commands".
- `ProcessManager`: a saga with event-sourced state per correlation key, `Step`s,
  `Timeout`s that survive restarts.
- `OutboxDispatcher`: delivers `SideEffect`s recorded as pending events, with retries,
  backoff and dead letters.
- `ReactionRunner`: hosts them on the global event order, each at its own checkpoint.

Register `REACTION_TYPES` in the domain that hosts them: `domain.register(*REACTION_TYPES)`.
"""

from sekiban.reactions.dispatcher import (
    OutboxDispatcher,
    PendingEffect,
)
from sekiban.reactions.events import (
    CommandRequested,
    OutboxItem,
    ProcessCompleted,
    ProcessStarted,
    ProcessState,
    SideEffectAttemptFailed,
    SideEffectDeadLettered,
    SideEffectDelivered,
    SideEffectRequested,
    SideEffectRetryRequested,
    TimeoutCancelled,
    TimeoutFired,
    TimeoutScheduled,
)
from sekiban.reactions.outbox import (
    OutboxProjector,
    RecordDeliveryAttempt,
    RequestSideEffect,
    RetrySideEffect,
    outbox_keys,
)
from sekiban.reactions.process import FiredTimeout, ProcessManager, Step, Timeout
from sekiban.reactions.reaction import Reaction, SideEffect, derived_id
from sekiban.reactions.registry import REACTION_TYPES
from sekiban.reactions.runner import (
    ParkedItem,
    ReactionRunner,
    SubscriptionStatus,
)
from sekiban.reactions.status import ReactionsStatus, reactions_status

__all__ = [
    "REACTION_TYPES",
    "CommandRequested",
    "FiredTimeout",
    "OutboxDispatcher",
    "OutboxItem",
    "OutboxProjector",
    "ParkedItem",
    "PendingEffect",
    "ProcessCompleted",
    "ProcessManager",
    "ProcessStarted",
    "ProcessState",
    "Reaction",
    "ReactionRunner",
    "ReactionsStatus",
    "RecordDeliveryAttempt",
    "RequestSideEffect",
    "RetrySideEffect",
    "SideEffect",
    "SideEffectAttemptFailed",
    "SideEffectDeadLettered",
    "SideEffectDelivered",
    "SideEffectRequested",
    "SideEffectRetryRequested",
    "Step",
    "SubscriptionStatus",
    "Timeout",
    "TimeoutCancelled",
    "TimeoutFired",
    "TimeoutScheduled",
    "derived_id",
    "outbox_keys",
    "reactions_status",
]
