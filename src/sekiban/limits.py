"""CommandLimits: how much one command may write, checked before anything is appended.

Sizes are UTF-8 bytes of the stored form (the payload's JSON text as the store keeps
it), not characters: "é" is two bytes and "🙂" four, which is what a database row, a
Cosmos DB document or a network frame is measured in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sekiban.core.payload_checks import DEFAULT_MAX_DEPTH
from sekiban.core.serialization import StoredEvent
from sekiban.errors import (
    CommandTooLargeError,
    ConfigurationError,
    PayloadTooLargeError,
    TooManyEventsError,
)

DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576
DEFAULT_MAX_EVENTS_PER_COMMAND = 1_000
DEFAULT_MAX_COMMAND_BYTES = 4 * 1_048_576
MAX_DEPTH_LIMIT = 128


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """The most one command may append: `max_events` events, each payload at most
    `max_payload_bytes` and all payloads together at most `max_command_bytes` (UTF-8
    bytes). A command over a limit raises `TooManyEventsError`, `PayloadTooLargeError`
    or `CommandTooLargeError` and appends nothing. Values below 1 raise
    `ConfigurationError`.

    `max_depth` is how many JSON containers (objects and arrays, the payload's own
    object included) a stored payload may nest: an event payload, a snapshot's
    aggregate payload or a command sent to an actor nesting deeper raises
    `UnstorablePayloadError`. At most `MAX_DEPTH_LIMIT`, past which the JSON parsers
    on the read path give up."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_events: int = DEFAULT_MAX_EVENTS_PER_COMMAND
    max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "max_events", "max_command_bytes", "max_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
        if self.max_depth > MAX_DEPTH_LIMIT:
            raise ConfigurationError(f"max_depth must be at most {MAX_DEPTH_LIMIT}")

    def check(self, command_type: str, events: Sequence[StoredEvent]) -> None:
        """Raise the typed error for the first limit `events` (one command's) exceed."""
        if len(events) > self.max_events:
            raise TooManyEventsError(command_type, len(events), self.max_events)
        total = 0
        for event in events:
            payload = event.payload
            # ASCII text (most JSON) is one byte a character: no need to encode it.
            size = len(payload) if payload.isascii() else len(payload.encode())
            if size > self.max_payload_bytes:
                raise PayloadTooLargeError(event.event_type, size, self.max_payload_bytes)
            total += size
        if total > self.max_command_bytes:
            raise CommandTooLargeError(command_type, total, self.max_command_bytes)
