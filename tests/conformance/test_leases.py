"""Leases, on every store that has them: one holder per name, taken again once let go,
and a runner that stands by while another runs its subscriber and takes over after."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from sekiban import PartitionKeys
from sekiban.projections.runner import SubscriptionRunner
from sekiban.stores import EventStore
from sekiban.stores.leases import LeaseProvider
from tests.conformance.backends import Stores
from tests.support import stored_events


def leases_of(store: EventStore) -> LeaseProvider:
    if not isinstance(store, LeaseProvider):
        pytest.skip(f"{type(store).__name__} has no leases")
    return store


async def test_a_name_has_one_holder_until_it_is_let_go(stores: Stores) -> None:
    leases = leases_of(stores.events)
    first = await leases.try_lease("projection:a")
    assert first is not None and first.name == "projection:a" and await first.held()
    assert await leases.try_lease("projection:a") is None  # not even in this process
    other = await leases.try_lease("projection:b")
    assert other is not None

    await first.release()
    assert not await first.held()
    again = await leases.try_lease("projection:a")
    assert again is not None and await again.held()
    assert await other.held()
    for lease in (again, other):
        await lease.release()


class Counter:
    """A subscriber that counts the events after its checkpoint, in a shared record."""

    def __init__(self, store: EventStore, checkpoints: dict[str, int], name: str = "counter"):
        self.store, self.checkpoints, self.name = store, checkpoints, name
        self.position = -1  # unknown until read from the checkpoint
        self.seen: list[int] = []

    async def catch_up(self, stop: Callable[[], bool]) -> None:
        if self.position < 0:
            self.position = self.checkpoints.get(self.name, 0)
        async for batch in self.store.read_all(self.position, 2):
            for event in batch:
                assert event.position is not None
                self.seen.append(event.position)
                self.position = event.position
            if stop():
                return

    def unsaved(self) -> bool:
        return self.position > self.checkpoints.get(self.name, 0)

    async def save(self) -> None:
        self.checkpoints[self.name] = self.position

    def forget(self) -> None:
        self.position = -1


async def test_a_standby_runner_takes_over_from_the_checkpoint_when_the_holder_stops(
    stores: Stores,
) -> None:
    store = stores.events
    checkpoints: dict[str, int] = {}
    first, second = Counter(store, checkpoints), Counter(store, checkpoints)

    def runner(counter: Counter) -> SubscriptionRunner:
        return SubscriptionRunner(
            store,
            [counter],
            poll_interval=timedelta(milliseconds=20),
            max_backoff=timedelta(milliseconds=40),
            leases=leases_of(store),
            standby_interval=timedelta(milliseconds=50),
        )

    holder, standby = runner(first), runner(second)
    holding = asyncio.create_task(holder.run())
    await until(lambda: holder.standing_by == [])
    standing = asyncio.create_task(standby.run())
    await until(lambda: standby.standing_by == ["counter"])

    for _ in range(3):
        await store.append(stored_events(PartitionKeys.generate(), 1, 2), 0)
    await until(lambda: len(first.seen) == 6)
    holder.stop()
    await holding
    assert checkpoints["counter"] == first.seen[-1]  # saved on stop

    for _ in range(2):
        await store.append(stored_events(PartitionKeys.generate(), 1, 1), 0)
    await until(lambda: len(second.seen) == 2)
    standby.stop()
    await standing
    # Every event was counted once, by one runner or the other, in order.
    assert first.seen + second.seen == sorted(set(first.seen + second.seen))
    assert len(first.seen + second.seen) == 8


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")
