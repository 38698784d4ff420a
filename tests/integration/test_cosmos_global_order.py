"""`read_all` on Cosmos DB never passes by a commit whose create is still in flight.

A commit's ordering key is taken just before its document is created, and `read_all`
returns only commits whose key is older than the safe window (see
`sekiban.stores.cosmos`). These tests hold a create on purpose after its key was taken,
commit other streams meanwhile, and check what a reader resuming from the last position
it saw gets — within the window, and (the documented limit) beyond it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from sekiban import PartitionKeys, StoredEvent
from sekiban.stores.cosmos import CosmosEventStore
from tests.conformance.backends import require_env
from tests.support import stored_events

pytestmark = pytest.mark.cosmos

Connect = Callable[[timedelta], Awaitable[CosmosEventStore]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Stores on fresh containers, with the given safe window; dropped after the test."""
    stores: list[CosmosEventStore] = []

    async def open_store(safe_window: timedelta) -> CosmosEventStore:
        store = await CosmosEventStore.open(
            endpoint=require_env("SEKIBAN_COSMOS_ENDPOINT"),
            key=require_env("SEKIBAN_COSMOS_KEY"),
            container_prefix=f"t-{uuid.uuid4().hex[:12]}",
            safe_window=safe_window,
        )
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        try:
            await store.drop()
        finally:
            await store.close()


async def read_all(store: CosmosEventStore, after: int = 0) -> list[StoredEvent]:
    return [e async for batch in store.read_all(after, batch_size=2) for e in batch]


def commits(events: list[StoredEvent]) -> list[tuple[PartitionKeys, int]]:
    return [(e.partition_keys, e.version) for e in events]


def last_position(events: list[StoredEvent]) -> int:
    position = events[-1].position
    assert position is not None
    return position


class Gate:
    """Holds the creates of one stream's commits after their ordering key was taken."""

    def __init__(
        self, store: CosmosEventStore, keys: PartitionKeys, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.reached, self.release = asyncio.Event(), asyncio.Event()
        create = store.containers.events.create_item

        async def held_create(body: dict[str, Any]) -> Any:
            if body["pk"] == str(keys):
                self.reached.set()
                await self.release.wait()
            return await create(body)

        monkeypatch.setattr(store.containers.events, "create_item", held_create)


async def test_reader_does_not_pass_a_commit_in_flight_within_the_window(
    connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = timedelta(seconds=1)
    store = await connect(window)
    early, held, later = (PartitionKeys.generate() for _ in range(3))
    await store.append(stored_events(early, 1, 1), 0)
    await asyncio.sleep(window.total_seconds())  # `early` is now older than the window

    gate = Gate(store, held, monkeypatch)
    holding = asyncio.create_task(store.append(stored_events(held, 1, 2), 0))
    await gate.reached.wait()  # its ordering key is taken; its create is not sent
    await store.append(stored_events(later, 1, 1), 0)  # committed, with a later key
    seen = await read_all(store)
    for _ in range(5):  # keep reading while the commit is held
        assert commits(seen) == [(early, 1)]
        await asyncio.sleep(0.05)
        seen = await read_all(store)
    gate.release.set()
    await holding

    await asyncio.sleep(window.total_seconds())
    rest = await read_all(store, last_position(seen))
    assert commits(rest) == [(held, 1), (held, 2), (later, 1)]
    assert store.late_commits == 0


async def test_append_slower_than_the_window_is_logged_and_counted(
    connect: Connect, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The documented limit: a create cannot be undone, so a commit that became visible
    later than the window after its key is reported, and a reader may have passed it."""
    window = timedelta(milliseconds=200)
    store = await connect(window)
    held, later = PartitionKeys.generate(), PartitionKeys.generate()
    gate = Gate(store, held, monkeypatch)
    holding = asyncio.create_task(store.append(stored_events(held, 1, 1), 0))
    await gate.reached.wait()
    await store.append(stored_events(later, 1, 1), 0)
    await asyncio.sleep(window.total_seconds() * 1.5)
    seen = await read_all(store)
    assert commits(seen) == [(later, 1)]  # the reader passed the held commit's key

    with caplog.at_level(logging.ERROR, logger="sekiban.stores.cosmos"):
        gate.release.set()
        await holding
    assert store.late_commits == 1
    assert "longer than the read_all safe window" in caplog.text
    assert await read_all(store, last_position(seen)) == []  # missed by this reader
    assert commits(await read_all(store)) == [(held, 1), (later, 1)]  # a rebuild has it


async def test_resuming_reader_sees_every_commit_of_racing_writers_once_in_order(
    connect: Connect,
) -> None:
    window = timedelta(milliseconds=200)
    store = await connect(window)
    appended: set[str] = set()
    writing = True

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        keys = PartitionKeys.generate()
        version = 0
        for _ in range(15):
            events = stored_events(keys, version + 1, rng.randint(1, 3))
            await store.append(events, version)
            appended.update(e.id for e in events)
            version += len(events)
            await asyncio.sleep(rng.random() / 100)

    async def reader() -> list[StoredEvent]:
        seen: list[StoredEvent] = []
        after = 0
        while writing:
            batch = await read_all(store, after)
            if batch:
                seen += batch
                after = last_position(batch)
            await asyncio.sleep(0.01)
        await asyncio.sleep(window.total_seconds())
        return seen + await read_all(store, after)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(seed) for seed in range(6)))
    writing = False
    seen = await reading

    ids = [e.id for e in seen]
    assert len(ids) == len(set(ids)) and set(ids) == appended
    positions = [last_position([e]) for e in seen]
    assert positions == sorted(positions)
    assert store.late_commits == 0
