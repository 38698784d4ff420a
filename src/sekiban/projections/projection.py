"""One multi-projection: a projector's state at a position in the global event order,
and the catch-up that moves it forward one event at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from typing import Generic, Protocol, TypeVar

from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import EventPayload
from sekiban.core.query import MultiProjector
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import ProjectionError, UnknownTypeError
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, EventStore, GroupFilteredReader

S = TypeVar("S")

YIELD_EVERY = 100
"""Events scanned between two yields to the event loop during a catch-up, so other tasks
wait at most about as long as folding this many events takes."""


class ReadsEvents(Protocol):
    """What declares the events it reads: a multi-projector, a reaction (None: all)."""

    @property
    def groups(self) -> Collection[str] | None: ...

    @property
    def event_types(self) -> Collection[type[EventPayload]] | None: ...


class EventFilter:
    """Which stored events a multi-projector (or any `ReadsEvents`, e.g. a reaction)
    reads, decided from the stored row (group and event type string), before anything
    is decoded."""

    def __init__(self, projector: ReadsEvents, domain: DomainTypes) -> None:
        self.groups = None if projector.groups is None else frozenset(projector.groups)
        self.event_types = None if projector.event_types is None else set(projector.event_types)
        self._domain = domain
        self._by_type_string: dict[str, bool] = {}

    @property
    def reads_everything(self) -> bool:
        return self.groups is None and self.event_types is None

    def __call__(self, stored: StoredEvent) -> bool:
        if self.groups is not None and stored.partition_keys.group not in self.groups:
            return False
        if self.event_types is None:
            return True
        reads = self._by_type_string.get(stored.event_type)
        if reads is None:
            # Resolved through the registry once per stored type string (old names and
            # schema versions included); a type the domain does not know is not read.
            try:
                reads = self._domain.event_type(stored.event_type) in self.event_types
            except UnknownTypeError:
                reads = False
            self._by_type_string[stored.event_type] = reads
        return reads


class Projection(Generic[S]):
    """A multi-projector's state after every event up to `position` (0: none).

    `events_applied` counts the events it folded (those its filter reads). After a
    projector error the state may have been changed in place by the failed call, so the
    projection is marked `broken` and its owner discards it: no caller sees that state.
    """

    def __init__(
        self,
        projector: MultiProjector[S],
        serializer: Serializer,
        state: S,
        position: int = 0,
        events_applied: int = 0,
    ) -> None:
        self.projector = projector
        self.state = state
        self.position = position
        self.events_applied = events_applied
        self.broken: ProjectionError | None = None
        self.lock = asyncio.Lock()
        self._to_event = serializer.to_event
        self._reads = EventFilter(projector, serializer.domain)

    @property
    def name(self) -> str:
        return self.projector.name

    async def catch_up(
        self,
        event_store: EventStore,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
        stop: Callable[[], bool] | None = None,
        before: int | None = None,
    ) -> int:
        """Apply every event after `position`, in order; the number applied.

        The position moves after each event, so a failure leaves the projection exactly
        after the last event it applied, and raises `ProjectionError` naming the event.
        At most one batch of events is held at a time. `stop` is asked after each batch
        and ends the catch-up there when it says so; with `before`, events at that
        position or later are left for another call. A projector with `groups` reads
        through the store's `GroupFilteredReader` when it has one: the server skips the
        other groups' events, and the position moves past them all the same.
        """
        if self.broken is not None:
            raise self.broken
        applied = 0
        batches = self._pages(event_store, batch_size)
        try:
            async for batch, scanned in batches:
                end = max((batch[-1].position or 0) if batch else 0, scanned or 0)
                if before is not None and end >= before:
                    applied += await self._apply([e for e in batch if (e.position or 0) < before])
                    if scanned is not None:
                        self.position = max(self.position, before - 1)
                    break
                applied += await self._apply(batch)
                if scanned is not None:
                    self.position = max(self.position, scanned)
                if progress is not None:
                    progress(self.position)
                if stop is not None and stop():
                    break
                # Dropped before the store reads the next batch, or two would be alive.
                del batch
        finally:
            # Leaving early: let the store end its read now, not when collected.
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()
        return applied

    def _pages(
        self, event_store: EventStore, batch_size: int
    ) -> AsyncIterator[tuple[list[StoredEvent], int | None]]:
        """The events after `position` in pages, each with the position the page has
        scanned up to when the store filtered on the server (else None)."""
        groups = self._reads.groups
        if groups is not None and isinstance(event_store, GroupFilteredReader):
            return event_store.read_all_of_groups(groups, self.position, batch_size)
        return _unfiltered(event_store.read_all(self.position, batch_size))

    async def _apply(self, batch: list[StoredEvent]) -> int:
        applied = 0
        project, to_event, reads = self.projector.project, self._to_event, self._reads
        for scanned, stored in enumerate(batch, 1):
            if reads(stored):
                try:
                    self.state = project(self.state, to_event(stored))
                except Exception as error:
                    self.broken = ProjectionError(
                        self.name,
                        stored.position or 0,
                        stored.id,
                        stored.event_type,
                        str(stored.partition_keys),
                        error,
                    )
                    raise self.broken from error
                applied += 1
                self.events_applied += 1
            self.position = stored.position or self.position
            if scanned % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return applied


async def _unfiltered(
    batches: AsyncIterator[list[StoredEvent]],
) -> AsyncIterator[tuple[list[StoredEvent], int | None]]:
    try:
        async for batch in batches:
            yield batch, None
            del batch  # before the store decodes the next one
    finally:
        close = getattr(batches, "aclose", None)
        if close is not None:
            await close()
