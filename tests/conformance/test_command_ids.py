"""Command ids on every store: stored with the commit, unique per stream, enforced by
the store itself in the append's own atomic write."""

from __future__ import annotations

import asyncio

import pytest

from sekiban import ConcurrencyError, DuplicateCommandError, InvalidAppendError, PartitionKeys
from sekiban.stores.protocols import MAX_COMMAND_ID_LENGTH
from tests.conformance.backends import Stores
from tests.conformance.test_event_store import read_stream, without_position
from tests.support import stored_events


async def test_a_command_id_appended_twice_is_a_duplicate_and_writes_nothing(
    stores: Stores,
) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("account")
    await store.append(stored_events(keys, 1, 2), 0, command_id="cmd-1")

    with pytest.raises(DuplicateCommandError) as duplicate:
        await store.append(stored_events(keys, 3, 1), 2, command_id="cmd-1")

    assert (duplicate.value.partition_keys, duplicate.value.command_id) == (keys, "cmd-1")
    assert [e.version for e in await read_stream(store, keys)] == [1, 2]
    await store.append(stored_events(keys, 3, 1), 2, command_id="cmd-2")  # the next one fits


@pytest.mark.parametrize("second_expects", [0, 1], ids=["same-version", "next-version"])
async def test_concurrent_appends_of_one_command_id_commit_once(
    stores: Stores, second_expects: int
) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("account")
    for _ in range(5):  # a few rounds, so both interleavings are likely to come up
        head = len(await read_stream(store, keys))
        command_id = f"racer-{head}"
        outcomes = await asyncio.gather(
            store.append(stored_events(keys, head + 1, 2), head, command_id=command_id),
            store.append(
                stored_events(keys, head + 1 + second_expects, 1),
                head + second_expects,
                command_id=command_id,
            ),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(f, (ConcurrencyError, DuplicateCommandError)) for f in failures)
        assert len(failures) == 1, outcomes
        committed = await store.read_command(keys, command_id)
        assert committed is not None
        events = await read_stream(store, keys)
        assert [e.version for e in events] == list(range(1, len(events) + 1))
        assert events[head:] == committed


async def test_streams_may_reuse_a_command_id(stores: Stores) -> None:
    store, _ = stores
    first, second = PartitionKeys.generate("account"), PartitionKeys.generate("account")
    await store.append(stored_events(first, 1, 1), 0, command_id="shared")
    await store.append(stored_events(second, 1, 3), 0, command_id="shared")

    assert [e.version for e in await store.read_command(first, "shared") or []] == [1]
    assert [e.version for e in await store.read_command(second, "shared") or []] == [1, 2, 3]


async def test_read_command_returns_exactly_the_commits_events(stores: Stores) -> None:
    store, _ = stores
    keys, other = PartitionKeys.generate("account"), PartitionKeys.generate("account")
    await store.append(stored_events(keys, 1, 2), 0, command_id="a")
    middle = stored_events(keys, 3, 3)
    await store.append(middle, 2, command_id="b")
    await store.append(stored_events(other, 1, 2), 0, command_id="x")  # interleaved
    await store.append(stored_events(keys, 6, 1), 5, command_id="c")

    found = await store.read_command(keys, "b")

    assert found is not None
    assert without_position(found) == middle
    assert found == (await read_stream(store, keys))[2:5]  # positions as the stream gives
    assert await store.read_command(keys, "x") is None
    assert await store.read_command(keys, "unknown") is None
    assert await store.read_command(PartitionKeys.generate("account"), "b") is None


async def test_commits_without_a_command_id_never_collide(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("account")
    for version in range(1, 4):
        await store.append(stored_events(keys, version, 1), version - 1)
    await store.append(stored_events(keys, 4, 1), 3, command_id="")  # "" is no id either
    assert len(await read_stream(store, keys)) == 4


async def test_an_overlong_command_id_is_refused_before_writing(stores: Stores) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("account")
    with pytest.raises(InvalidAppendError, match="command id"):
        await store.append(
            stored_events(keys, 1, 1), 0, command_id="x" * (MAX_COMMAND_ID_LENGTH + 1)
        )
    await store.append(stored_events(keys, 1, 1), 0, command_id="x" * MAX_COMMAND_ID_LENGTH)
    assert len(await read_stream(store, keys)) == 1
