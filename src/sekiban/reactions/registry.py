"""`REACTION_TYPES`: the framework's own types reactions store, to register in the
domain that hosts reactions."""

from __future__ import annotations

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
)

REACTION_TYPES: tuple[type, ...] = (
    ProcessStarted,
    ProcessCompleted,
    CommandRequested,
    TimeoutScheduled,
    TimeoutCancelled,
    TimeoutFired,
    SideEffectRequested,
    SideEffectAttemptFailed,
    SideEffectDelivered,
    SideEffectDeadLettered,
    SideEffectRetryRequested,
    ProcessState,
    OutboxItem,
    OutboxProjector,
    RequestSideEffect,
    RecordDeliveryAttempt,
    RetrySideEffect,
)
"""The framework's own types reactions store: register them in the hosting domain."""
