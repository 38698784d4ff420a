"""The protocols every event store and snapshot store implements.

What each guarantees is proven once, for every store, by `tests/conformance/`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from typing import Protocol, Self, TypeVar, runtime_checkable

from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import InvalidAppendError, InvalidReadError
from sekiban.snapshot.types import AggregateSnapshot

DEFAULT_BATCH_SIZE = 1000
MAX_VERSION = 2**31 - 1
"""The highest version any store keeps: PostgreSQL's `integer` version column, the
narrowest of them (SQLite and Cosmos DB would take up to 2**63 - 1)."""
T = TypeVar("T")
_TEXT_FIELDS = ("event_type", "causation_id", "correlation_id", "executed_user")


class ClosesOnExit:
    """Makes a store an async context manager: `async with await Store.open(...) as
    store:` closes it on exit, as `await store.close()` does."""

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class EventStore(Protocol):
    """Append-only storage of event streams, one per partition keys."""

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        """Append one command's events to one stream, all or none.

        The events must be versions `expected_version + 1 ...` of a single stream.
        Raises `ConcurrencyError` when the stream is not at `expected_version`. A
        `command_id` is stored with the commit and is unique per stream, enforced by the
        store in the same atomic write (not by a read before it) and kept forever: a
        second commit with it raises `DuplicateCommandError` and writes nothing.
        """
        ...

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        """The events of the stream's commit with `command_id`, as `read_stream` gives
        them, or None when the stream has no such commit."""
        ...

    def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        """The stream's events with version > `after_version`, ascending, in batches."""
        ...

    def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        """Every stream's events with position > `after_position` in global order.

        A reader that resumes from the last position it saw never misses an event,
        even one whose transaction committed after a later-numbered one.
        """
        ...

    async def close(self) -> None: ...


class SnapshotStore(Protocol):
    """The latest snapshot of each (aggregate, projector)."""

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        """The stored snapshot, or None. A stored document that cannot be parsed
        raises `SnapshotRejectedError`."""
        ...

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        """Store `snapshot` unless one at a higher version is already stored.

        Returns True when `snapshot` is now the stored one.
        """
        ...

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class SnapshotStreamReader(Protocol):
    """Optional for event stores: read a snapshot and the events after it in one request.

    `EventReplayOptimizer` uses it, when `reads_snapshots_of` its snapshot store, to load
    an aggregate in one round trip instead of two; its checks on the snapshot and the
    delta are the same either way.
    """

    def reads_snapshots_of(self, snapshot_store: SnapshotStore) -> bool:
        """Whether `read_snapshot_and_stream` reads the snapshots `snapshot_store` keeps."""
        ...

    async def read_snapshot_and_stream(
        self, partition_keys: PartitionKeys, projector_name: str, batch_size: int
    ) -> tuple[AggregateSnapshot | None, list[StoredEvent]]:
        """The stored snapshot (None if there is none) and, read with it, the first
        `batch_size` events of the stream from the snapshot's version on (that version
        included), or from version 1 when there is no snapshot.

        A stored snapshot that cannot be parsed raises `SnapshotRejectedError`.
        """
        ...


@runtime_checkable
class DecodingReader(Protocol):
    """Optional for event stores: read a stream's events already decoded.

    `EventReplayOptimizer` replays through it when the store has it: a store that
    keeps a commit's events in one document hands its rows to
    `Serializer.commit_events`, which builds each `Event` without a `StoredEvent` in
    between, as the fold takes it. The events, their order and errors are those of
    `read_stream` followed by `Serializer.to_event`.
    """

    def read_stream_decoded(
        self,
        partition_keys: PartitionKeys,
        after_version: int,
        batch_size: int,
        serializer: Serializer,
    ) -> AsyncIterator[Iterator[Event[EventPayload]]]:
        """The events of `read_stream(partition_keys, after_version, batch_size)`, each
        decoded as `serializer.to_event` would, in pages of about `batch_size` events
        decoded as they are taken: take a page's events before asking for the next."""
        ...


@runtime_checkable
class EventNotifier(Protocol):
    """Optional for event stores: tell readers when events were appended, so a
    subscription wakes at once instead of polling (PostgreSQL: LISTEN/NOTIFY).

    A notification is a hint to read, never the events themselves: a reader still
    reads from its own position, and polls now and then as well (a notification can
    arrive before the events are readable, and none arrives while disconnected).
    """

    async def wait_for_append(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for an append; True when one was notified since
        the calling task's previous call returned (or when that is unknown: the first
        call, or after the notifications were interrupted), False on timeout.

        Raises `StoreConnectionError` when the store cannot be reached to listen.
        """
        ...


@runtime_checkable
class GroupFilteredReader(Protocol):
    """Optional for event stores: read the global order keeping only some groups'
    events, filtered by the server, so the others are neither sent nor decoded.

    A multi-projector that declares its `groups` catches up through it when its store
    has it (PostgreSQL). Each page comes with the position up to which every event, of
    any group, has been scanned: a reader resumes after it, and a read-your-writes wait
    for an event of another group ends once it is passed.
    """

    def read_all_of_groups(
        self,
        groups: Collection[str],
        after_position: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[tuple[list[StoredEvent], int]]:
        """Pages of the events of `groups` with position > `after_position`, in global
        order (a page may be empty), each with its scanned-to position; the same
        never-miss guarantee as `read_all`."""
        ...


@runtime_checkable
class EventCounter(Protocol):
    """Optional for event stores: count the events after a position without reading
    them (memory, SQLite: from the head position; PostgreSQL: counted by the server).
    A projection's lag is measured with it; without it, by reading those events."""

    async def count_events_after(self, position: int) -> int:
        """How many events `read_all(position)` would eventually give."""
        ...


def check_batch_size(batch_size: int) -> int:
    """`batch_size` if it is a whole number of events, at least 1; else `InvalidReadError`."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidReadError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    return batch_size


MAX_COMMAND_ID_LENGTH = 256
"""Characters in a command id: short enough for every store's unique index."""


def check_command_id(command_id: str | None) -> str | None:
    """`command_id`, or None for no id (None or ""); raises `InvalidAppendError` for
    anything but a string of at most `MAX_COMMAND_ID_LENGTH` characters."""
    if command_id is None or command_id == "":
        return None
    if not isinstance(command_id, str) or len(command_id) > MAX_COMMAND_ID_LENGTH:
        raise InvalidAppendError(
            f"a command id must be a string of at most {MAX_COMMAND_ID_LENGTH} characters, "
            f"got {command_id!r:.80}"
        )
    return command_id


def check_append(
    events: Sequence[StoredEvent], expected_version: int, max_events: int | None = None
) -> PartitionKeys:
    """The stream the events belong to; raises `InvalidAppendError` if they do not
    continue it at consecutive versions from `expected_version + 1` (up to
    `MAX_VERSION`), carry a timestamp without a timezone (SQL stores would return it
    changed) or text no store can keep (NUL characters, which PostgreSQL refuses, or
    lone surrogates, which are not UTF-8), or number more than `max_events` (a store's
    own limit). Every store calls it before writing, so each gets the same error."""
    if not events:
        raise InvalidAppendError("append needs at least one event")
    if max_events is not None and len(events) > max_events:
        raise InvalidAppendError(
            f"one append may hold at most {max_events} events, got {len(events)}"
        )
    if not 0 <= expected_version <= MAX_VERSION - len(events):
        raise InvalidAppendError(
            f"expected_version must be between 0 and {MAX_VERSION} - the number of events, "
            f"got {expected_version}"
        )
    keys = events[0].partition_keys
    stamp = None
    for offset, event in enumerate(events, start=1):
        # Identity first: one command's events share their keys and timestamp objects.
        if event.partition_keys is not keys and event.partition_keys != keys:
            raise InvalidAppendError("one append may only touch one stream")
        if event.timestamp is not stamp:
            stamp = event.timestamp
            if stamp.utcoffset() is None:
                raise InvalidAppendError(f"event {event.id} has a naive timestamp; use UTC")
        # The four fields at once: one NUL search and one ASCII test on their joined
        # text; field by field (for the message) only when that finds something.
        joined = event.event_type + event.causation_id + event.correlation_id
        joined += event.executed_user
        if "\x00" in joined or not joined.isascii():
            for name in _TEXT_FIELDS:
                check_text(event, name)
        if event.version != expected_version + offset:
            raise InvalidAppendError(
                f"event {offset} has version {event.version}, expected {expected_version + offset}"
            )
    return keys


def check_text(event: StoredEvent, name: str) -> None:
    """Raise `InvalidAppendError` if the event's text field `name` holds a NUL character
    or a lone surrogate."""
    text: str = getattr(event, name)
    if "\x00" in text:
        raise InvalidAppendError(f"event {event.id}: {name} holds a NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidAppendError(
                f"event {event.id}: {name} holds a lone surrogate (not UTF-8)"
            ) from None


async def rebatch(pages: AsyncIterator[list[T]], batch_size: int) -> AsyncIterator[list[T]]:
    """Batches of exactly `batch_size` events (the last one shorter) from pages of any
    size, for stores that read whole commits."""
    pending: list[T] = []
    async for page in pages:
        pending += page
        full = len(pending) - len(pending) % batch_size
        for start in range(0, full, batch_size):
            yield pending[start : start + batch_size]
        del pending[:full]
    if pending:
        yield pending
