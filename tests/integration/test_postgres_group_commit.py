"""PostgreSQL group commit: concurrent appends go to the server as one statement; a
group that a unique violation aborts falls back to lone appends, each writer getting
its own outcome; `read_command` still finds exactly one command's events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sekiban import ConcurrencyError, DuplicateCommandError, PartitionKeys
from sekiban.stores.postgres import PostgresEventStore
from sekiban.stores.postgres.group_commit import Command, inserted_commands
from tests.support import stored_events

pytestmark = pytest.mark.postgres


@pytest.fixture
def groups(store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group statement the store sends."""
    sizes: list[int] = []
    real = store._group._write_group

    async def spy(commands: list[Command]) -> Any:
        sizes.append(len(commands))
        return await real(commands)

    monkeypatch.setattr(store._group, "_write_group", spy)
    return sizes


async def versions(store: PostgresEventStore, keys: PartitionKeys) -> list[int]:
    return [e.version async for batch in store.read_stream(keys) for e in batch]


async def test_concurrent_appends_are_sent_as_one_group_statement(
    store: PostgresEventStore, groups: list[int]
) -> None:
    streams = [PartitionKeys.generate("account") for _ in range(6)]
    await asyncio.gather(
        *(
            store.append(stored_events(k, 1, 1 + i), 0, command_id="c")
            for i, k in enumerate(streams)
        )
    )
    assert groups and max(groups) > 1
    for i, keys in enumerate(streams):
        assert await versions(store, keys) == list(range(1, i + 2))
        committed = await store.read_command(keys, "c")
        assert committed is not None and len(committed) == i + 1


async def test_a_group_aborted_by_a_unique_violation_falls_back_to_lone_appends(
    store: PostgresEventStore, groups: list[int]
) -> None:
    target = PartitionKeys.generate("account")
    await store.append(stored_events(target, 1, 2), 0, command_id="taken")
    others = [PartitionKeys.generate("account") for _ in range(4)]

    outcomes = await asyncio.gather(
        *(store.append(stored_events(k, 1, 1), 0) for k in others[:2]),
        store.append(stored_events(target, 2, 1), 1),  # stale: version 2 exists
        store.append(stored_events(target, 3, 1), 2, command_id="taken"),  # next group
        *(store.append(stored_events(k, 1, 1), 0) for k in others[2:]),
        return_exceptions=True,
    )

    assert groups and max(groups) > 1
    assert outcomes[:2] == [None, None] and outcomes[4:] == [None, None], outcomes
    assert isinstance(outcomes[2], ConcurrencyError), outcomes[2]
    assert isinstance(outcomes[3], DuplicateCommandError), outcomes[3]
    assert await versions(store, target) == [1, 2]
    for keys in others:
        assert await versions(store, keys) == [1]


async def test_a_command_behind_its_stream_is_refused_alone_within_the_group(
    store: PostgresEventStore, groups: list[int]
) -> None:
    behind = PartitionKeys.generate("account")
    others = [PartitionKeys.generate("account") for _ in range(3)]
    outcomes = await asyncio.gather(
        *(store.append(stored_events(k, 1, 1), 0) for k in others),
        store.append(stored_events(behind, 4, 1), 3),  # the stream has no version 3
        return_exceptions=True,
    )
    assert groups == [4]  # no unique violation: the group statement decided alone
    assert outcomes[:3] == [None] * 3
    assert isinstance(outcomes[3], ConcurrencyError)
    assert outcomes[3].actual_version == 0


def test_inserted_commands_reads_the_returned_event_numbers() -> None:
    def command(size: int) -> Command:
        return Command(("r", "g", None), 0, ([None] * size,) * 8, None, None)

    commands = [command(2), command(1), command(3)]
    assert inserted_commands(commands, [1, 2, 4, 5, 6]) == [True, False, True]


async def test_an_append_held_up_in_the_server_does_not_hold_back_the_next_ones(
    store: PostgresEventStore, admin: Any, schema: str
) -> None:
    # A group on its way does not make later appends wait for it: a slow append (a
    # lock wait, a trigger) must not stall every writer of the process.
    from tests.integration.test_postgres_global_order import hold_appends_to, wait_until_blocked

    slow = PartitionKeys.generate("slow")
    gate = await hold_appends_to(schema, admin, slow)
    held = [
        asyncio.create_task(store.append(stored_events(slow, 1, 1), 0)),
        asyncio.create_task(store.append(stored_events(PartitionKeys.generate(), 1, 1), 0)),
    ]
    await wait_until_blocked(admin, gate)
    fast = PartitionKeys.generate("fast")
    await asyncio.wait_for(store.append(stored_events(fast, 1, 1), 0), timeout=30)
    assert await versions(store, fast) == [1]
    await admin.execute("SELECT pg_advisory_unlock($1)", gate)
    await asyncio.gather(*held)
    assert await versions(store, slow) == [1]
