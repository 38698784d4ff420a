"""SQLite group commit: concurrent appends share a transaction, a lone append is written
at once, and what fails a whole group reaches every append of it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekiban import (
    ConcurrencyError,
    ConfigurationError,
    PartitionKeys,
    StoreConnectionError,
    StoreError,
)
from sekiban.stores import open_store
from sekiban.stores.loop_peek import others_ready
from sekiban.stores.sqlite import SqliteEventStore
from sekiban.stores.sqlite import group_commit as group_module
from sekiban.stores.sqlite.appending import encode_events
from sekiban.stores.sqlite.reading import decode_events
from tests.support import stored_events


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every group `write_group` writes, in order."""
    sizes: list[int] = []
    real = group_module.write_group

    def spy(connection: sqlite3.Connection, insert: Any, commands: list[Any]) -> Any:
        sizes.append(len(commands))
        return real(connection, insert, commands)

    monkeypatch.setattr(group_module, "write_group", spy)
    return sizes


async def _versions(store: SqliteEventStore, keys: PartitionKeys) -> list[int]:
    return [e.version async for batch in store.read_stream(keys) for e in batch]


async def test_appends_of_concurrent_tasks_are_written_as_one_group(
    tmp_path: Path, groups: list[int]
) -> None:
    async with await SqliteEventStore.open(tmp_path / "e.db", synchronous="FULL") as store:
        streams = [PartitionKeys.generate("account") for _ in range(8)]
        await asyncio.gather(*(store.append(stored_events(k, 1, 2), 0) for k in streams))
        assert groups == [8]
        for keys in streams:
            assert await _versions(store, keys) == [1, 2]


async def test_a_lone_append_is_written_at_once_without_waiting_a_turn(
    tmp_path: Path, groups: list[int]
) -> None:
    async with await SqliteEventStore.open(tmp_path / "e.db") as store:
        keys = PartitionKeys.generate("account")
        await store.append(stored_events(keys, 1, 1), 0)
        await store.append(stored_events(keys, 2, 1), 1)
        assert groups == [1, 1]


async def test_two_commands_on_one_stream_in_a_group_are_checked_as_in_sequence(
    tmp_path: Path, groups: list[int]
) -> None:
    async with await SqliteEventStore.open(tmp_path / "e.db") as store:
        keys = PartitionKeys.generate("account")
        outcomes = await asyncio.gather(
            store.append(stored_events(keys, 1, 1), 0),
            store.append(stored_events(keys, 2, 1), 1),  # follows the first: fits
            store.append(stored_events(keys, 2, 1), 1),  # the same version again: refused
            return_exceptions=True,
        )
        assert groups == [3]
        assert outcomes[:2] == [None, None]
        assert isinstance(outcomes[2], ConcurrencyError)
        assert outcomes[2].actual_version == 2
        assert await _versions(store, keys) == [1, 2]


async def test_a_fault_that_fails_the_group_reaches_every_append_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await SqliteEventStore.open(tmp_path / "e.db") as store:
        streams = [PartitionKeys.generate("account") for _ in range(4)]
        real_insert = store._group._insert  # type: ignore[union-attr]
        calls = 0

        def failing_third(connection: sqlite3.Connection, parameters: Any) -> bool:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise sqlite3.OperationalError("disk I/O error")
            return real_insert(connection, parameters)

        monkeypatch.setattr(store._group, "_insert", failing_third)
        outcomes = await asyncio.gather(
            *(store.append(stored_events(k, 1, 1), 0) for k in streams),
            return_exceptions=True,
        )

        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert len({id(o) for o in outcomes}) == len(outcomes)  # an error per append
        monkeypatch.setattr(store._group, "_insert", real_insert)
        for keys in streams:  # rolled back: the group's first two were not kept either
            assert await _versions(store, keys) == []
        await store.append(stored_events(streams[0], 1, 1), 0)  # the store goes on


async def test_group_commit_off_writes_each_append_alone(tmp_path: Path, groups: list[int]) -> None:
    store = await SqliteEventStore.open(tmp_path / "e.db", group_commit=False)
    async with store:
        streams = [PartitionKeys.generate("account") for _ in range(3)]
        await asyncio.gather(*(store.append(stored_events(k, 1, 1), 0) for k in streams))
        assert groups == []
        for keys in streams:
            assert await _versions(store, keys) == [1]


async def test_the_plain_path_gives_the_same_streams_as_the_peek(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, groups: list[int]
) -> None:
    """`others_ready` only decides whether a lone append waits a turn: forced to say
    "busy" every time, the same writers leave the same streams."""

    async def run(path: Path) -> list[list[int]]:
        async with await SqliteEventStore.open(path) as store:
            streams = [PartitionKeys.generate("account") for _ in range(5)]

            async def writer(keys: PartitionKeys) -> None:
                for version in range(3):
                    await store.append(stored_events(keys, version + 1, 1), version)

            await writer(streams[0])  # alone
            await asyncio.gather(*(writer(k) for k in streams[1:]))
            return [await _versions(store, k) for k in streams]

    peeked = await run(tmp_path / "a.db")
    monkeypatch.setattr(group_module, "others_ready", lambda loop: True)
    plain = await run(tmp_path / "b.db")
    assert peeked == plain == [[1, 2, 3]] * 5


def test_a_loop_without_a_ready_queue_counts_as_busy() -> None:
    class Loop:
        pass

    assert others_ready(Loop()) is True  # type: ignore[arg-type]


async def test_synchronous_is_checked_and_reaches_both_connections(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):
        await SqliteEventStore.open(tmp_path / "e.db", synchronous="OFF")
    stores = await open_store(f"sqlite:///{tmp_path / 'f.db'}?synchronous=full&group_commit=no")
    async with stores:
        store = stores.events
        assert isinstance(store, SqliteEventStore) and store._group is None
        level = await store._db.run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        waiting = await store._db.run_waiting(
            lambda c: c.execute("PRAGMA synchronous").fetchone()[0]
        )
        assert level == waiting == 2  # FULL


async def test_a_closed_store_refuses_appends(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "e.db")
    await store.close()
    with pytest.raises(StoreConnectionError):
        await store.append(stored_events(PartitionKeys.generate("account"), 1, 1), 0)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(_TEXT, _TEXT, _TEXT)
def test_encode_events_reads_back_as_the_plain_json_encoder_writes(
    event_type: str, user: str, payload_text: str
) -> None:
    """pydantic-core's encoder against `json`'s, on arbitrary (valid) text."""
    keys = PartitionKeys.generate("account")
    events = stored_events(
        keys, 1, 2, event_type=event_type or "T", payload=json.dumps(payload_text)
    )
    events = [dataclasses.replace(e, executed_user=user) for e in events]
    text = encode_events(events)
    assert json.loads(text) == json.loads(
        json.dumps(
            [
                [
                    e.id,
                    e.sortable_unique_id,
                    e.event_type,
                    e.payload,
                    e.timestamp.isoformat(),
                    e.causation_id,
                    e.correlation_id,
                    e.executed_user,
                ]
                for e in events
            ]
        )
    )
    assert decode_events(text, keys, 1, 2, None) == events


async def test_a_group_waits_on_the_worker_thread_while_another_writer_holds_the_lock(
    tmp_path: Path, groups: list[int]
) -> None:
    path = tmp_path / "e.db"
    async with await SqliteEventStore.open(path) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        streams = [PartitionKeys.generate("account") for _ in range(4)]
        first = asyncio.gather(*(store.append(stored_events(k, 1, 1), 0) for k in streams[:2]))
        pending = asyncio.ensure_future(first)
        await asyncio.sleep(0.05)  # the group is waiting for the lock on the thread
        later = asyncio.gather(*(store.append(stored_events(k, 1, 1), 0) for k in streams[2:]))
        pending_later = asyncio.ensure_future(later)
        await asyncio.sleep(0.05)
        assert not pending.done()
        blocker.execute("COMMIT")
        blocker.close()
        await pending
        await pending_later
        for keys in streams:
            assert await _versions(store, keys) == [1]
        assert sum(groups) >= 4 and groups[-1] == 2  # the later two wrote as one group
