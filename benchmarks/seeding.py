"""Accounts with long histories, written fast, in both frameworks.

A history of n events is an "opened" event and n - 1 deposits of 1. Most of it goes
in as large commits (`chunk` events per append or save); the last `tail` events are
committed one at a time, as commands would, so a load that starts near the end of the
stream reads small commits (this matters for Cosmos DB, whose unit of reading is the
commit document). The snapshot, when asked for, is taken at version `snapshot_at`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from benchmarks.domains import (
    Account,
    AccountOpened,
    AccountProjector,
    Bank,
    MoneyDeposited,
    account_keys,
)
from benchmarks.engines import Stores
from sekiban import Aggregate, AggregatePayload, Event, EventMetadata, Serializer, SortableUniqueId
from sekiban.core.events import EventPayload, new_event_id
from sekiban.core.partition_keys import PartitionKeys
from sekiban.snapshot import SnapshotConfiguration, take_snapshot

FILL_CHUNK = 1000
"""Events per append (sekiban) or save (eventsourcing) while seeding."""
SINGLE_TAIL = 10
"""The last events of a seeded history, committed one per append or save."""


def commit_sizes(history: int, chunk: int = FILL_CHUNK, tail: int = SINGLE_TAIL) -> list[int]:
    """How many events each commit of a seeded history holds, in order."""
    tail = min(tail, history)
    bulk = history - tail
    return [min(chunk, bulk - start) for start in range(0, bulk, chunk)] + [1] * tail


async def seed_sekiban(
    stores: Stores,
    serializer: Serializer,
    history: int,
    *,
    snapshot_at: int | None = None,
    chunk: int = FILL_CHUNK,
) -> PartitionKeys:
    """A new account with `history` events in `stores`, snapshotted at `snapshot_at`.

    The events are folded as they are written, so the snapshot is the aggregate the
    projector gives at that version, taken as the executor would take it.
    """
    keys = account_keys(uuid.uuid4())
    projector = AccountProjector()
    aggregate: Aggregate[AggregatePayload] = projector.empty_aggregate(keys)
    now = datetime.now(UTC)
    for size in commit_sizes(history, chunk):
        events = [_event(keys, aggregate.version + offset, now) for offset in range(1, size + 1)]
        await stores.events.append([serializer.to_stored(e) for e in events], aggregate.version)
        aggregate = projector.fold(aggregate, events)
        if aggregate.version == snapshot_at:
            config = SnapshotConfiguration()
            snapshot = take_snapshot(
                aggregate,
                serializer,
                taken_at=now,
                events_since_previous=aggregate.version,
                compress_above=config.compress_above_bytes,
                compression_level=config.compression_level,
            )
            await stores.snapshots.save(snapshot)
    if snapshot_at is not None and not 0 < snapshot_at <= history:
        raise ValueError(f"snapshot_at {snapshot_at} is outside the history 1..{history}")
    return keys


def _event(keys: PartitionKeys, version: int, now: datetime) -> Event[EventPayload]:
    payload: EventPayload = (
        AccountOpened(owner="bench") if version == 1 else MoneyDeposited(amount=1)
    )
    return Event(new_event_id(), SortableUniqueId.generate(), version, keys, payload, now, _NONE)


_NONE = EventMetadata()


def seed_eventsourcing(
    app: Bank, history: int, *, snapshot_at: int | None = None, chunk: int = FILL_CHUNK
) -> uuid.UUID:
    """A new account with `history` events saved by `app`, snapshotted at `snapshot_at`
    (`app` must have snapshotting enabled for that)."""
    account = Account("bench")
    sizes = commit_sizes(history, chunk)
    sizes[0] -= 1  # the first commit holds the created event
    for size in sizes:
        for _ in range(size):
            account.deposit(1)
        app.save(account)
    if snapshot_at is not None:
        app.take_snapshot(account.id, version=snapshot_at)
    return account.id
