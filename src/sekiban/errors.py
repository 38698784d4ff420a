"""Every error a user can catch. Each derives from `SekibanError` and says what to do.

One module, imported by every layer and importing none: `sekiban.__all__` exports
all of them (a test keeps the two in step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sekiban.core.partition_keys import PartitionKeys
    from sekiban.snapshot.types import SnapshotRejection


class SekibanError(Exception):
    """Base of every error the framework raises."""


class InvalidPartitionKeysError(SekibanError, ValueError):
    """Partition keys that do not follow the naming rules or cannot be parsed."""


class InvalidSortableUniqueIdError(SekibanError, ValueError):
    """A string that is not a sortable unique id."""


class DuplicateTypeError(SekibanError):
    """Two domain types were registered under one name."""

    def __init__(self, kind: str, name: str, existing: type, new: type) -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"{kind} name {name!r} is already registered for {existing.__qualname__}; "
            f"cannot also register {new.__qualname__}. Give one of them another name."
        )


class UnknownTypeError(SekibanError):
    """A type name (read from storage or input) that is not in the domain registry."""

    def __init__(self, kind: str, name: str, registry: str = "DomainTypes") -> None:
        self.kind, self.name = kind, name
        super().__init__(
            f"unknown {kind} type {name!r}: it is not registered in {registry}. "
            f"Register it with DomainTypes.register(...)."
        )


class SerializationError(SekibanError):
    """Stored or received data that cannot be decoded into a registered type."""


class UpcastError(SerializationError):
    """A stored event of an older schema version that its upcasters could not bring up
    to date: an upcaster raised, or returned something other than a dict. The upcaster's
    own exception is the `__cause__`."""


class UnstorablePayloadError(SekibanError, ValueError):
    """A payload (an event's, a snapshot's aggregate or a command) whose stored JSON
    would not read back as it is: a NaN or infinite float, a string with a lone
    surrogate, nesting deeper than `CommandLimits.max_depth`, or a field the JSON
    does not carry faithfully. Nothing was written.

    `kind` is "event", "aggregate payload" or "command"; `type_name` its registered
    name; `path` the field at fault, like `items[3].price`."""

    def __init__(self, kind: str, type_name: str, path: str, reason: str) -> None:
        self.kind, self.type_name, self.path, self.reason = kind, type_name, path, reason
        shown = path if len(path) <= 80 else f"{path[:60]}...{path[-16:]}"
        super().__init__(
            f"{kind} {type_name} cannot be stored: {shown}: {reason}; nothing was written"
        )


class CommandValidationError(SekibanError, ValueError):
    """A command whose fields are invalid. Nothing was read or written."""

    def __init__(self, command_type: str, errors: list[dict[str, Any]]) -> None:
        self.command_type, self.errors = command_type, errors
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) or "?" for e in errors)
        super().__init__(f"invalid command {command_type}: {fields}: {errors}")


class AggregateStateError(SekibanError):
    """A command was sent to an aggregate whose payload is not the state it requires."""

    def __init__(self, command_type: str, required: tuple[type, ...], actual: type) -> None:
        self.command_type, self.required, self.actual = command_type, required, actual
        names = " or ".join(t.__name__ for t in required)
        super().__init__(
            f"command {command_type} requires the aggregate to be {names}, "
            f"but it is {actual.__name__}; nothing was appended"
        )


class ConcurrencyError(SekibanError):
    """Someone else appended to the stream first. Reload the aggregate and retry."""

    def __init__(self, partition_keys: PartitionKeys, expected: int, actual: int | None) -> None:
        self.partition_keys, self.expected_version, self.actual_version = (
            partition_keys,
            expected,
            actual,
        )
        actual_text = "unknown" if actual is None else str(actual)
        super().__init__(
            f"stream {partition_keys} was expected at version {expected} but is at "
            f"{actual_text}; reload and retry"
        )


class DuplicateCommandError(SekibanError):
    """The stream already holds a commit with this command id; nothing was appended.

    Raised by an event store's `append`. The executors never let it reach a caller:
    they answer the resend with the first commit's events (`EventStore.read_command`).
    """

    def __init__(self, partition_keys: PartitionKeys, command_id: str) -> None:
        self.partition_keys, self.command_id = partition_keys, command_id
        super().__init__(
            f"command {command_id!r} was already applied to stream {partition_keys}; "
            "nothing was appended. Read its events with read_command"
        )


class EventStreamCorruptError(SekibanError):
    """Stored events whose versions are not contiguous or cannot be decoded."""


class PayloadTooLargeError(SekibanError, ValueError):
    """An event payload larger than the configured limit (UTF-8 bytes). Nothing was
    appended."""

    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type, self.size, self.limit = event_type, size, limit
        super().__init__(f"event {event_type} payload is {size} bytes; the limit is {limit}")


class TooManyEventsError(SekibanError, ValueError):
    """A command that decided more events than `CommandLimits.max_events`. Nothing was
    appended: split the work over several commands or raise the limit."""

    def __init__(self, command_type: str, count: int, limit: int) -> None:
        self.command_type, self.count, self.limit = command_type, count, limit
        super().__init__(f"command {command_type} decided {count} events; the limit is {limit}")


class CommandTooLargeError(SekibanError, ValueError):
    """A command whose events' payloads total more UTF-8 bytes than
    `CommandLimits.max_command_bytes`. Nothing was appended."""

    def __init__(self, command_type: str, size: int, limit: int) -> None:
        self.command_type, self.size, self.limit = command_type, size, limit
        super().__init__(
            f"command {command_type} would append {size} bytes of payload; the limit is {limit}"
        )


class ConfigurationError(SekibanError, ValueError):
    """Invalid framework configuration."""


class MissingExtraError(SekibanError, ModuleNotFoundError):
    """A module needs a package from an extra that is not installed; the message says
    which extra to install. `name` is the missing package's module."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature, self.extra, self.missing = feature, extra, missing
        super().__init__(
            f"{feature} needs the {extra!r} extra ({missing} is not installed): "
            f"pip install 'sekiban[{extra}]'",
            name=missing,
        )


class CommandIdMismatchError(SekibanError, ValueError):
    """`command(..., command_id=...)` and `metadata.causation_id` name different ids.

    The command id *is* the causation id the events carry; give one of them, or the
    same value in both. Nothing was sent or appended.
    """

    def __init__(self, command_id: str, causation_id: str) -> None:
        self.command_id, self.causation_id = command_id, causation_id
        super().__init__(
            f"command_id {command_id!r} differs from metadata.causation_id "
            f"{causation_id!r}; the command id is the causation id, so give one of them"
        )


class InvalidHandlerResultError(SekibanError, TypeError):
    """A command handler returned something other than event payloads."""


class InvalidAppendError(SekibanError, ValueError):
    """Events handed to `append` that are not one stream's next versions."""


class InvalidReadError(SekibanError, ValueError):
    """A read asked for something no store can give, such as batches of no events."""


class StoreError(SekibanError):
    """A store failed in a way that is not about the data sent: its server's own error
    (a full disk, a missing table, a damaged file). The driver's error is the
    `__cause__`.

    `outcome_unknown` says whether a write may have happened: True when the fault hit
    while an append was being sent or after (the commit may have landed and its reply
    been lost: read the stream before deciding again), False when nothing was written
    (a read, a fault before anything was sent, or an error the server answered with).
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        self.outcome_unknown = outcome_unknown
        super().__init__(message)


class StoreConnectionError(StoreError):
    """A store could not be reached or did not answer in time: a connection, network,
    timeout or authentication fault. Check its address and that it is running."""


class StoreAuthenticationError(StoreConnectionError):
    """A store's server refused the credentials. Check the configured key or password."""


class StoreBusyError(StoreConnectionError):
    """Another writer held the store's lock (SQLite) longer than the configured wait
    (`busy_timeout`). Nothing was written: try again later, or wait longer."""


class SnapshotRejectedError(SekibanError):
    """A snapshot that cannot be used; the aggregate must be replayed from its events."""

    def __init__(self, rejection: SnapshotRejection) -> None:
        self.rejection = rejection
        super().__init__(f"snapshot rejected ({rejection}); replay the events instead")


class ProjectionError(SekibanError):
    """A multi-projector raised on an event, or could not decode one it reads.

    The projection stays at the last event it applied: the failed event is applied
    again (never twice) once the projector or the event is fixed. `position`,
    `event_id`, `event_type` and `partition_keys` name the event; the projector's own
    error is the `__cause__`.
    """

    def __init__(
        self,
        projector_name: str,
        position: int,
        event_id: str,
        event_type: str,
        partition_keys: str,
        cause: BaseException,
    ) -> None:
        super().__init__(
            f"projector {projector_name!r} failed on event {event_id} ({event_type} of "
            f"{partition_keys}) at position {position}: {type(cause).__name__}: {cause}"
        )
        self.projector_name = projector_name
        self.position = position
        self.event_id = event_id
        self.event_type = event_type
        self.partition_keys = partition_keys


class ConsistencyTimeoutError(SekibanError, TimeoutError):
    """A query asked to wait for a write (`after=`) timed out before its projection
    caught up to it. The write itself is committed; ask again later."""


class UnknownReactionError(SekibanError, LookupError):
    """A reaction, process manager or dispatcher name that the runner (or store) does
    not hold."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        super().__init__(f"no reaction named {name!r}; known: {', '.join(known) or 'none'}")


class NoSideEffectHandlerError(SekibanError):
    """An outbox item of a kind the dispatcher has no handler for. Recorded as a failed
    delivery attempt (dead-lettered after the last): register a handler for the kind,
    then retry the item (`sekiban reactions retry`)."""

    def __init__(self, kind: str, known: list[str]) -> None:
        self.kind, self.known = kind, known
        super().__init__(
            f"no side-effect handler for kind {kind!r}; handlers: {', '.join(known) or 'none'}"
        )


class RemoteCommandError(SekibanError):
    """The aggregate actor refused a command; `error_type` names the error it raised
    (e.g. "AggregateStateError", "ConcurrencyError" or a domain error's class name)."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type, self.message = error_type, message
        super().__init__(f"{error_type}: {message}")


class DaprUnavailableError(SekibanError):
    """The Dapr sidecar cannot be reached, or kept failing after retries.

    For a command, the outcome is unknown: an attempt may have been applied before its
    reply was lost. Sending the command again with the same `command_id` (named in the
    message) is safe: a command id already in the stream is answered with the original
    reply instead of being applied again.
    """


class SidecarError(SekibanError):
    """A Dapr process could not be found, started, or did not become ready."""
