"""A catch-up holds a bounded number of decoded events and stream keys, whatever the
history's length, on every store.

The bound is counted, not timed: each time the store has read a batch, the test counts
the `StoredEvent` and `PartitionKeys` instances alive, above those alive before the
catch-up (the in-memory store keeps every event anyway).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import pytest

from examples.bank import bank_domain
from sekiban import Event, EventPayload, MultiProjector, PartitionKeys, Serializer, StoredEvent
from sekiban.projections import Projection
from sekiban.stores import EventStore, stream_keys
from tests.conformance.backends import Stores
from tests.support import stored_events


def live(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


class Counter(MultiProjector[int]):
    def initial_state(self) -> int:
        return 0

    def project(self, state: int, event: Event[EventPayload]) -> int:
        return state + 1


class Watched:
    """An event store whose `read_all` records how many `kind` instances are alive each
    time a new batch has been read: the moment the most are (the batch just decoded,
    and whatever the reader still holds of the batches before it)."""

    def __init__(self, store: EventStore, kind: type) -> None:
        self.store, self.kind, self.peak = store, kind, 0

    async def read_all(self, after: int, batch_size: int) -> AsyncIterator[list[StoredEvent]]:
        async for batch in self.store.read_all(after, batch_size):
            self.peak = max(self.peak, live(self.kind))
            yield batch
            del batch  # this wrapper holds none


async def peak_increase(stores: Stores, kind: type, batch_size: int) -> int:
    """The most `kind` instances alive at once during a catch-up from 0, above before."""
    gc.collect()
    baseline = live(kind)
    watched = Watched(stores.events, kind)
    projection = Projection(Counter(), Serializer(bank_domain()), 0)
    applied = await projection.catch_up(watched, batch_size=batch_size)  # type: ignore[arg-type]
    assert applied == projection.state > 0
    return watched.peak - baseline


async def test_catch_up_holds_about_one_batch_of_decoded_events(stores: Stores) -> None:
    # 20 commits of 100 events: the history is 20 batches of 100 long.
    for _ in range(4):
        keys = PartitionKeys.generate("account")
        for version in range(1, 500, 100):
            await stores.events.append(stored_events(keys, version, 100), version - 1)
    increase = await peak_increase(stores, StoredEvent, batch_size=100)
    assert increase <= 150  # one batch (not the one before it too, not a whole page)


async def test_catch_up_over_many_streams_keeps_a_bounded_number_of_keys(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_keys.StreamKeys, "limit", 16)
    for _ in range(200):
        await stores.events.append(stored_events(PartitionKeys.generate("account"), 1, 1), 0)
    increase = await peak_increase(stores, PartitionKeys, batch_size=10)
    assert increase <= 30  # at most `limit` cached, and the keys of one batch
