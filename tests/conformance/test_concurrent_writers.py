"""Many concurrent writers on every store: what group commit (SQLite: the appends of one
event-loop turn share a transaction) must not change. No event is lost or doubled, a
conflict or a duplicate command id goes to the writer that caused it, and a refused
command leaves the others of its turn committed."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from sekiban import ConcurrencyError, DuplicateCommandError, PartitionKeys
from tests.conformance.backends import Stores
from tests.conformance.test_event_store import read_all, read_stream, without_position
from tests.support import stored_events

WRITERS = 24
APPENDS = 6


async def test_concurrent_writers_on_their_own_streams_lose_and_double_nothing(
    stores: Stores,
) -> None:
    store, _ = stores
    streams = [PartitionKeys.generate("account") for _ in range(WRITERS)]
    written: dict[PartitionKeys, list[object]] = {keys: [] for keys in streams}

    async def writer(keys: PartitionKeys, size: int) -> None:
        version = 0
        for n in range(APPENDS):
            events = stored_events(keys, version + 1, size)
            await store.append(events, version, command_id=f"{keys.aggregate_id}-{n}")
            written[keys] += events
            version += size

    await asyncio.gather(*(writer(keys, 1 + i % 3) for i, keys in enumerate(streams)))

    for keys in streams:
        assert without_position(await read_stream(store, keys)) == written[keys]
    everything = await read_all(store)
    ids = Counter(e.id for e in everything)
    assert len(ids) == sum(len(events) for events in written.values())
    assert set(ids.values()) == {1}
    positions = [e.position for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_a_conflict_among_concurrent_writers_goes_to_the_writers_that_lost(
    stores: Stores,
) -> None:
    store, _ = stores
    contested = PartitionKeys.generate("account")
    bystanders = [PartitionKeys.generate("account") for _ in range(8)]
    for keys in bystanders:
        await store.append(stored_events(keys, 1, 1), 0)
    for round_ in range(4):
        head = 2 * round_  # each round's winner appends two events
        racers = [store.append(stored_events(contested, head + 1, 2), head) for _ in range(4)]
        others = [store.append(stored_events(k, round_ + 2, 1), round_ + 1) for k in bystanders]
        outcomes = await asyncio.gather(*racers, *others, return_exceptions=True)

        raced, rest = outcomes[: len(racers)], outcomes[len(racers) :]
        assert rest == [None] * len(bystanders), rest
        assert sum(o is None for o in raced) == 1, raced
        for lost in (o for o in raced if o is not None):
            assert isinstance(lost, ConcurrencyError), lost
            assert (lost.partition_keys, lost.expected_version) == (contested, head)
        versions = [e.version for e in await read_stream(store, contested)]
        assert versions == list(range(1, head + 3))
    for keys in bystanders:
        assert [e.version for e in await read_stream(store, keys)] == [1, 2, 3, 4, 5]


async def test_duplicate_command_ids_among_concurrent_writers_are_refused(
    stores: Stores,
) -> None:
    store, _ = stores
    keys = PartitionKeys.generate("account")
    others = [PartitionKeys.generate("account") for _ in range(6)]
    await store.append(stored_events(keys, 1, 1), 0, command_id="first")

    outcomes = await asyncio.gather(
        store.append(stored_events(keys, 2, 1), 1, command_id="again"),
        *(store.append(stored_events(k, 1, 1), 0, command_id="again") for k in others),
        return_exceptions=True,
    )
    assert outcomes == [None] * (1 + len(others))  # ids are per stream
    # Once "again" is in the stream, resends of both ids race with other writers. (In
    # one gather, the resend at version 2 could reach a store before the append that
    # makes version 2: a conflict then, not a duplicate, on stores that run them
    # concurrently, such as Cosmos DB.)
    more = [PartitionKeys.generate("account") for _ in range(6)]
    outcomes = await asyncio.gather(
        *(store.append(stored_events(k, 1, 1), 0, command_id="again") for k in more),
        store.append(stored_events(keys, 3, 1), 2, command_id="again"),
        store.append(stored_events(keys, 2, 1), 1, command_id="first"),
        return_exceptions=True,
    )
    assert outcomes[: len(more)] == [None] * len(more)
    duplicate, first_again = outcomes[-2], outcomes[-1]
    assert isinstance(duplicate, DuplicateCommandError), duplicate
    assert (duplicate.partition_keys, duplicate.command_id) == (keys, "again")
    # "first" was committed long before; this one also lost the race for version 2.
    assert isinstance(first_again, DuplicateCommandError | ConcurrencyError), first_again
    assert [e.version for e in await read_stream(store, keys)] == [1, 2]
    committed = await store.read_command(keys, "again")
    assert committed is not None and [e.version for e in committed] == [2]


@pytest.mark.parametrize("failure", ["conflict", "duplicate", "ahead"])
async def test_a_refused_command_leaves_the_concurrent_others_committed(
    stores: Stores, failure: str
) -> None:
    store, _ = stores
    target = PartitionKeys.generate("account")
    await store.append(stored_events(target, 1, 2), 0, command_id="taken")
    version, command_id = {"conflict": (1, None), "duplicate": (2, "taken"), "ahead": (4, None)}[
        failure
    ]
    refused = store.append(stored_events(target, version + 1, 1), version, command_id=command_id)
    before = [PartitionKeys.generate("account") for _ in range(5)]
    after = [PartitionKeys.generate("account") for _ in range(5)]

    outcomes = await asyncio.gather(
        *(store.append(stored_events(k, 1, 3), 0, command_id="c") for k in before),
        refused,
        *(store.append(stored_events(k, 1, 3), 0, command_id="c") for k in after),
        return_exceptions=True,
    )

    assert outcomes[:5] == [None] * 5 and outcomes[6:] == [None] * 5, outcomes
    expected = DuplicateCommandError if failure == "duplicate" else ConcurrencyError
    assert isinstance(outcomes[5], expected), outcomes[5]
    for keys in before + after:
        assert [e.version for e in await read_stream(store, keys)] == [1, 2, 3]
    assert [e.version for e in await read_stream(store, target)] == [1, 2]
