"""The SQLite store's own layout: one row per commit, a per-event view, no old files."""

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from examples.bank import AccountProjector, bank_domain
from sekiban import (
    ConfigurationError,
    DuplicateCommandError,
    PartitionKeys,
    SerializationError,
    Serializer,
)
from sekiban.loading import EventReplayOptimizer
from sekiban.projections import ProjectionRecord
from sekiban.stores import InMemorySnapshotStore
from sekiban.stores.sqlite import SqliteEventStore
from sekiban.stores.sqlite import reading as sqlite_reading
from tests.conformance.test_snapshot_store import assert_signed_snapshots_round_trip
from tests.support import bank_account_with_snapshot, stored_events


async def test_a_multi_event_append_is_one_row_and_the_view_shows_each_event(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    a, b = PartitionKeys.generate("account"), PartitionKeys.generate("account")
    written = stored_events(a, 1, 3) + stored_events(b, 1, 1) + stored_events(a, 4, 2)
    await store.append(written[:3], 0)
    await store.append(written[3:4], 0)
    await store.append(written[4:], 3)
    await store.close()

    with sqlite3.connect(path) as db:
        commits = db.execute(
            "SELECT position, first_version, last_version FROM commits ORDER BY position"
        ).fetchall()
        events = db.execute(
            "SELECT position, id, aggregate_id, version, payload, timestamp, executed_user "
            "FROM events ORDER BY position"
        ).fetchall()
    assert commits == [(3, 1, 3), (4, 1, 1), (6, 4, 5)]
    assert events == [
        (
            i + 1,
            e.id,
            str(e.partition_keys.aggregate_id),
            e.version,
            e.payload,
            e.timestamp.isoformat(),
            "tester",
        )
        for i, e in enumerate(written)
    ]


async def test_a_file_in_the_old_one_row_per_event_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT)")
        db.execute("INSERT INTO events (id) VALUES ('kept')")
    with pytest.raises(ConfigurationError, match="one-row-per-event"):
        await SqliteEventStore.open(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id FROM events").fetchall() == [("kept",)]
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'commits'").fetchall() == []


async def test_a_file_from_before_command_ids_gains_the_column_and_index_in_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "before.db"
    keys = PartitionKeys.generate("account")
    store = await SqliteEventStore.open(path)
    await store.append(stored_events(keys, 1, 2), 0)
    await store.close()
    with sqlite3.connect(path) as db:  # back to the layout of 0.1.0
        db.execute("DROP INDEX commits_command")
        db.execute("ALTER TABLE commits DROP COLUMN command_id")

    for _ in range(2):  # opening again changes nothing
        store = await SqliteEventStore.open(path)
        await store.close()
    store = await SqliteEventStore.open(path)
    try:
        await store.append(stored_events(keys, 3, 1), 2, command_id="c")
        with pytest.raises(DuplicateCommandError):
            await store.append(stored_events(keys, 4, 1), 3, command_id="c")
        assert len([e async for batch in store.read_stream(keys) for e in batch]) == 3
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT last_version, command_id FROM commits ORDER BY position")
        assert rows.fetchall() == [(2, None), (3, "c")]


@pytest.mark.parametrize(
    "damage",
    [
        "events = '[[1, 2'",
        """events = '{"not": "a list"}'""",
        """events = '[["too", "short"]]'""",
        "events = '[3]'",
        "events = json_remove(events, '$[1]')",  # fewer events than its versions
        "last_version = 'two'",
    ],
)
async def test_a_damaged_commit_row_is_a_serialization_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 2), 0)
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE commits SET {damage}")
    store = await SqliteEventStore.open(path)
    try:
        with pytest.raises(SerializationError, match="commit"):
            [e async for batch in store.read_stream(keys) for e in batch]
        with pytest.raises(SerializationError):
            [e async for batch in store.read_all() for e in batch]
    finally:
        await store.close()


async def test_a_snapshot_load_is_one_statement_on_its_own_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = bank_domain()
    store = await SqliteEventStore.open(tmp_path / "events.db")
    other = await SqliteEventStore.open(tmp_path / "other.db")
    try:
        assert store.reads_snapshots_of(store.snapshot_store())
        assert not store.reads_snapshots_of(other.snapshot_store())
        assert not store.reads_snapshots_of(InMemorySnapshotStore())
        _, keys = await bank_account_with_snapshot(store, store.snapshot_store())
        statements: list[str] = []
        connection = store._db.connection
        assert connection is not None
        connection.set_trace_callback(statements.append)
        optimizer = EventReplayOptimizer(store, Serializer(domain), store.snapshot_store())
        result = await optimizer.load(domain.projector(AccountProjector), keys)
        assert len(statements) == 1, statements
        assert result.statistics.from_snapshot and result.statistics.events_replayed == 3
        connection.set_trace_callback(None)
        replayed = await EventReplayOptimizer(store, Serializer(domain)).load(
            domain.projector(AccountProjector), keys
        )
        assert result.aggregate == replayed.aggregate
    finally:
        await store.close()
        await other.close()


async def test_reads_fetch_only_the_commits_a_batch_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    keys = PartitionKeys.generate()
    for start in range(0, 2500, 500):
        await store.append(stored_events(keys, start + 1, 500), start)
    fetched: list[int] = []
    take = sqlite_reading.take

    def counting_take(*args: Any, **kwargs: Any) -> list[Any]:
        rows = take(*args, **kwargs)
        fetched.append(sum(row[1] - row[0] + 1 for row in rows if row[0] is not None))
        return rows

    monkeypatch.setattr(sqlite_reading, "take", counting_take)
    try:
        batches = [b async for b in store.read_stream(keys, 0, batch_size=700)]
        assert [len(b) for b in batches] == [700, 700, 700, 400]
        # A statement stops once it holds READ_CHUNK (250) events, here one 500-event
        # commit, so the loop runs other tasks between them; the last finds nothing.
        assert fetched == [500, 500, 500, 500, 500, 0]
        fetched.clear()
        assert len([e async for b in store.read_all(0, batch_size=700) for e in b]) == 2500
        assert fetched == [500, 500, 500, 500, 500, 0]
        fetched.clear()
        _, head = await store.read_snapshot_and_stream(keys, "account", 700)
        assert [e.version for e in head] == list(range(1, 701))
        assert fetched == [1000]
    finally:
        await store.close()


async def test_a_file_from_before_signing_gains_the_signature_column(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await (await SqliteEventStore.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE snapshots DROP COLUMN signature")
    store = await SqliteEventStore.open(path)
    try:
        await assert_signed_snapshots_round_trip(store.snapshot_store())
    finally:
        await store.close()


async def test_a_file_from_before_projection_stores_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await (await SqliteEventStore.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE projections")
    async with await SqliteEventStore.open(path) as store:
        projections = store.projection_store()
        record = ProjectionRecord(
            "accounts", "1", "", 3, 3, datetime(2026, 1, 1, tzinfo=UTC), "jsonl", 0, "0" * 64, b""
        )
        assert await projections.save(record)
        assert await projections.get("accounts") == record
