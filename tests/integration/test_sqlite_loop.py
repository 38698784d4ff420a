"""The SQLite store shares the event loop: its statements run on it, so a long read must
let other tasks run between its statements, and WAL checkpoints run off it.
(How long the loop waits is measured by `python -m benchmarks.loop_lag`, not here.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sekiban import PartitionKeys
from sekiban.core.serialization import StoredEvent
from sekiban.stores.sqlite import SqliteEventStore
from sekiban.stores.sqlite.database import CHECKPOINT_EVERY
from tests.support import stored_events

EVENTS = 5000  # five default batches of 1,000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    async with await SqliteEventStore.open(tmp_path / "events.db") as store:
        yield store


async def fill(store: SqliteEventStore, keys: PartitionKeys, commits: int, size: int) -> None:
    for i in range(commits):
        await store.append(stored_events(keys, i * size + 1, size), i * size)


async def ticks_while_reading(reads: AsyncIterator[list[StoredEvent]]) -> tuple[int, int]:
    """How often a task that only yields ran while `reads` was consumed, and the events."""
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker has started
    seen = 0
    first = ticks
    async for batch in reads:
        seen += len(batch)
    during = ticks - first
    stop = True
    await task
    return during, seen


async def test_a_long_read_all_lets_other_tasks_run(store: SqliteEventStore) -> None:
    keys = PartitionKeys.existing(uuid.uuid4(), "account")
    await fill(store, keys, EVENTS // 10, 10)
    during, seen = await ticks_while_reading(store.read_all())
    assert seen == EVENTS
    assert during >= EVENTS // 1000  # at least once per batch


async def test_a_long_read_stream_lets_other_tasks_run(store: SqliteEventStore) -> None:
    keys = PartitionKeys.existing(uuid.uuid4(), "account")
    await fill(store, keys, EVENTS // 10, 10)
    during, seen = await ticks_while_reading(store.read_stream(keys))
    assert seen == EVENTS
    assert during >= EVENTS // 1000


async def test_the_wal_is_checkpointed_while_writing(tmp_path: Path) -> None:
    # The loop's connection leaves checkpoints to the worker thread; without them the
    # WAL would hold every commit since the file was opened.
    path = tmp_path / "events.db"
    async with await SqliteEventStore.open(path) as store:
        keys = PartitionKeys.existing(uuid.uuid4(), "account")
        commits = CHECKPOINT_EVERY * 20
        await fill(store, keys, commits, 10)
        # Each commit writes at least two pages (the row, the stream index), one frame
        # each; checkpoints let the WAL start over after about CHECKPOINT_EVERY commits.
        frames = Path(f"{path}-wal").stat().st_size // (4096 + 24)
        assert frames < commits
        events = [e async for batch in store.read_stream(keys) for e in batch]
        assert len(events) == commits * 10
