"""Where a projection stands: `ProjectionStatus`, and its lag behind the event store."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, EventCounter, EventStore


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """One projection's progress.

    `position`: the last event it applied (or skipped, not reading it), 0 before any.
    `checkpoint`: the position of its persisted state (None: nothing persisted).
    `lag_events`: events in the store after `position`; `lag_seconds`: how long ago the
    oldest of them was written (0 when there is none); both None when the store could
    not be read. `last_error`: why its latest
    attempt to catch up failed (a store fault or a projector error), None once one
    succeeds.
    """

    name: str
    position: int
    checkpoint: int | None
    events_applied: int
    lag_events: int | None
    lag_seconds: float | None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The status as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Lag:
    """The events after a position: how many, and how old the oldest is (None:
    unknown)."""

    events: int | None
    seconds: float | None


async def measure_lag(event_store: EventStore, position: int, now: datetime) -> Lag:
    """The events `event_store.read_all` gives after `position`, and the age at `now`
    of the first. Counted without reading them on stores that can (`EventCounter`);
    on the others read (without decoding), at a cost that grows with the lag."""
    if isinstance(event_store, EventCounter):
        count = await event_store.count_events_after(position)
        oldest = await _first_timestamp(event_store, position) if count else None
    else:
        count, oldest = 0, None
        async for batch in event_store.read_all(position, DEFAULT_BATCH_SIZE):
            if oldest is None and batch:
                oldest = batch[0].timestamp
            count += len(batch)
    seconds = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
    return Lag(count, seconds)


async def _first_timestamp(event_store: EventStore, position: int) -> datetime | None:
    batches = aiter(event_store.read_all(position, 1))
    try:
        async for batch in batches:
            if batch:
                return batch[0].timestamp
        return None
    finally:
        close = getattr(batches, "aclose", None)  # a generator left mid-way: end it now
        if close is not None:
            await close()
