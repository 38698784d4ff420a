"""What every event store guarantees. Runs once per backend in `backends.py`."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from sekiban import ConcurrencyError, PartitionKeys, StoredEvent
from sekiban.errors import InvalidAppendError, InvalidReadError
from sekiban.projections.status import measure_lag
from sekiban.stores import EventStore
from sekiban.stores.protocols import EventCounter
from tests.conformance.backends import Stores
from tests.support import stored_events


async def read_stream(
    store: EventStore, keys: PartitionKeys, after: int = 0, batch_size: int = 1000
) -> list[StoredEvent]:
    return [e async for batch in store.read_stream(keys, after, batch_size) for e in batch]


async def read_all(store: EventStore, after: int = 0, batch_size: int = 1000) -> list[StoredEvent]:
    return [e async for batch in store.read_all(after, batch_size) for e in batch]


def without_position(events: list[StoredEvent]) -> list[StoredEvent]:
    return [dataclasses.replace(e, position=None) for e in events]


async def test_appended_events_read_back_unchanged(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("account")
    events = stored_events(keys, 1, 3)
    await store.append(events, expected_version=0)
    assert without_position(await read_stream(store, keys)) == events


async def test_read_stream_after_version_returns_only_later_events(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 5), 0)
    assert [e.version for e in await read_stream(store, keys, after=3)] == [4, 5]
    assert await read_stream(store, keys, after=5) == []


async def test_unknown_stream_reads_empty(stores: Stores) -> None:
    store, _ = stores
    assert await read_stream(store, PartitionKeys.generate()) == []


async def test_streams_are_isolated_by_every_partition_key_part(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("a", "tenant-1")
    same_id_other_group = PartitionKeys(keys.aggregate_id, "b", "tenant-1")
    same_id_other_root = PartitionKeys(keys.aggregate_id, "a", "tenant-2")
    await store.append(stored_events(keys, 1, 2), 0)
    await store.append(stored_events(same_id_other_group, 1, 1), 0)
    await store.append(stored_events(same_id_other_root, 1, 3), 0)
    assert len(await read_stream(store, keys)) == 2
    assert len(await read_stream(store, same_id_other_group)) == 1
    assert len(await read_stream(store, same_id_other_root)) == 3


async def test_stale_expected_version_is_rejected(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 2), 0)
    with pytest.raises(ConcurrencyError) as error:
        await store.append(stored_events(keys, 2, 1), 1)
    assert error.value.expected_version == 1
    assert [e.version for e in await read_stream(store, keys)] == [1, 2]


async def test_expected_version_ahead_of_stream_is_rejected(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    with pytest.raises(ConcurrencyError):
        await store.append(stored_events(keys, 3, 1), 2)
    assert await read_stream(store, keys) == []


async def test_malformed_append_is_rejected_and_writes_nothing(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    with pytest.raises(InvalidAppendError):
        await store.append([], 0)
    with pytest.raises(InvalidAppendError):
        await store.append(stored_events(keys, 1, 1) + stored_events(keys, 3, 1), 0)
    with pytest.raises(InvalidAppendError):
        await store.append(
            stored_events(keys, 1, 1) + stored_events(PartitionKeys.generate(), 2, 1), 0
        )
    assert await read_stream(store, keys) == []


async def test_multi_event_append_is_all_or_nothing(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 1), 0)
    # Versions 1..3 collide with the existing version 1: none of the three may land.
    with pytest.raises(ConcurrencyError):
        await store.append(stored_events(keys, 1, 3), 0)
    assert [e.version for e in await read_stream(store, keys)] == [1]
    await store.append(stored_events(keys, 2, 10), 1)
    assert [e.version for e in await read_stream(store, keys)] == list(range(1, 12))


async def test_racing_writers_get_exactly_one_winner_per_version(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    writers, rounds = 8, 15
    wins = 0

    async def writer() -> None:
        nonlocal wins
        for _ in range(rounds):
            while True:
                current = len(await read_stream(store, keys))
                try:
                    await store.append(stored_events(keys, current + 1, 2), current)
                    wins += 1
                    break
                except ConcurrencyError:
                    await asyncio.sleep(0)

    await asyncio.gather(*(writer() for _ in range(writers)))
    versions = [e.version for e in await read_stream(store, keys)]
    assert wins == writers * rounds
    assert versions == list(range(1, 2 * writers * rounds + 1))


async def test_long_streams_are_read_in_batches(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    for start in range(0, 2500, 500):
        await store.append(stored_events(keys, start + 1, 500), start)
    batches = [batch async for batch in store.read_stream(keys, 0, batch_size=700)]
    assert [len(b) for b in batches] == [700, 700, 700, 400]
    assert [e.version for b in batches for e in b] == list(range(1, 2501))


async def test_read_all_returns_every_stream_in_commit_order(stores: Stores) -> None:
    store, _ = stores
    a, b = PartitionKeys.generate(), PartitionKeys.generate()
    await store.append(stored_events(a, 1, 2), 0)
    await store.append(stored_events(b, 1, 1), 0)
    await store.append(stored_events(a, 3, 1), 2)
    events = await read_all(store)
    assert [(e.partition_keys, e.version) for e in events] == [(a, 1), (a, 2), (b, 1), (a, 3)]
    positions = [e.position for e in events]
    assert all(p is not None for p in positions)
    assert positions == sorted(positions) and len(set(positions)) == 4


async def test_read_all_resumes_after_a_position(stores: Stores) -> None:
    store, _ = stores
    a, b = PartitionKeys.generate(), PartitionKeys.generate()
    await store.append(stored_events(a, 1, 3), 0)
    seen = await read_all(store)
    await store.append(stored_events(b, 1, 2), 0)
    last = seen[-1].position
    assert last is not None
    later = await read_all(store, after=last, batch_size=1)
    assert [(e.partition_keys, e.version) for e in later] == [(b, 1), (b, 2)]


async def test_unicode_and_large_payloads_round_trip(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    text = "名前 ñ 🚀 \\\" ' ; DROP TABLE events; --" + "x" * 200_000
    payload = '{"note":' + __import__("json").dumps(text) + "}"
    events = stored_events(keys, 1, 1, payload=payload)
    await store.append(events, 0)
    [back] = await read_stream(store, keys)
    assert __import__("json").loads(back.payload) == {"note": text}
    assert back.correlation_id == "corr" and back.executed_user == "tester"


async def test_naive_timestamps_are_rejected(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    [event] = stored_events(keys, 1, 1)
    naive = dataclasses.replace(event, timestamp=event.timestamp.replace(tzinfo=None))
    with pytest.raises(InvalidAppendError, match="naive"):
        await store.append([naive], 0)
    assert await read_stream(store, keys) == []


async def test_reads_resume_inside_a_multi_event_append(stores: Stores) -> None:
    store, _ = stores
    a, b = PartitionKeys.generate(), PartitionKeys.generate()
    await store.append(stored_events(a, 1, 3), 0)
    await store.append(stored_events(b, 1, 4), 0)
    await store.append(stored_events(a, 4, 2), 3)
    assert [e.version for e in await read_stream(store, a, after=2)] == [3, 4, 5]
    assert [e.version for e in await read_stream(store, a, after=3, batch_size=1)] == [4, 5]
    assert await read_stream(store, a, after=5) == []
    everything = await read_all(store)
    first_of_b = next(e.position for e in everything if e.partition_keys == b)
    assert first_of_b is not None
    later = await read_all(store, after=first_of_b, batch_size=2)
    expected = [(b, 2), (b, 3), (b, 4), (a, 4), (a, 5)]
    assert [(e.partition_keys, e.version) for e in later] == expected


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
async def test_a_batch_size_below_one_event_is_refused(stores: Stores, batch_size: int) -> None:
    store, _ = stores
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 3), 0)
    with pytest.raises(InvalidReadError, match="batch_size"):
        await read_stream(store, keys, batch_size=batch_size)
    with pytest.raises(InvalidReadError, match="batch_size"):
        await read_all(store, batch_size=batch_size)
    assert [e.version for e in await read_stream(store, keys)] == [1, 2, 3]


async def test_read_stream_gives_each_event_its_global_position(stores: Stores) -> None:
    # Read-your-writes looks a command's last event up by stream and version and waits
    # for a projection to pass its position, so both reads must agree on it.
    store, _ = stores
    a, b = PartitionKeys.generate(), PartitionKeys.generate()
    await store.append(stored_events(a, 1, 2), 0)
    await store.append(stored_events(b, 1, 1), 0)
    await store.append(stored_events(a, 3, 3), 2)
    everything = {(e.partition_keys, e.version): e.position for e in await read_all(store)}
    for keys in (a, b):
        for after in range(3):
            for event in await read_stream(store, keys, after=after, batch_size=1):
                assert event.position is not None
                assert event.position == everything[(keys, event.version)]


async def test_lag_counts_the_events_after_a_position_without_reading_them_all(
    stores: Stores,
) -> None:
    store, _ = stores
    a, b = PartitionKeys.generate(), PartitionKeys.generate()
    await store.append(stored_events(a, 1, 3), 0)
    await store.append(stored_events(b, 1, 1), 0)
    await store.append(stored_events(a, 4, 2), 3)
    events = await read_all(store)
    now = datetime.now(UTC)
    for i, after in enumerate([0, *(e.position or 0 for e in events)]):
        lag = await measure_lag(store, after, now)
        assert lag.events == len(events) - i
        expected_age = 0.0 if i == len(events) else (now - events[i].timestamp).total_seconds()
        assert lag.seconds == pytest.approx(expected_age, abs=1e-3)
        if isinstance(store, EventCounter):
            assert await store.count_events_after(after) == len(events) - i
