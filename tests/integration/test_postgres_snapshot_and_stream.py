"""PostgreSQL loads a snapshot and the events after it in one statement."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import PartitionKeys, SekibanExecutor, Serializer
from sekiban.snapshot import EventReplayOptimizer, SnapshotConfiguration
from sekiban.stores import InMemorySnapshotStore
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import require_env
from tests.conformance.test_snapshot_store import snapshot_at
from tests.support import stored_events

pytestmark = pytest.mark.postgres


async def stream_of(store: PostgresEventStore, events: int) -> PartitionKeys:
    keys = PartitionKeys.generate("account")
    await store.append(stored_events(keys, 1, events), 0)
    return keys


async def test_without_a_snapshot_the_stream_is_read_from_version_1(
    store: PostgresEventStore,
) -> None:
    keys = await stream_of(store, 10)
    snapshot, events = await store.read_snapshot_and_stream(keys, "account", 4)
    assert snapshot is None
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert events == [e async for batch in store.read_stream(keys, 0, 4) for e in batch][:4]


async def test_the_snapshot_comes_with_the_events_from_its_version(
    store: PostgresEventStore,
) -> None:
    keys = await stream_of(store, 10)
    other = await stream_of(store, 10)
    snapshots = store.snapshot_store()
    await snapshots.save(snapshot_at(keys, 7))
    await snapshots.save(snapshot_at(other, 3))
    snapshot, events = await store.read_snapshot_and_stream(keys, "account", 1000)
    assert snapshot == await snapshots.get(keys, "account")
    assert [e.version for e in events] == [7, 8, 9, 10]
    assert {e.partition_keys for e in events} == {keys}
    _, first_two = await store.read_snapshot_and_stream(keys, "account", 2)
    assert [e.version for e in first_two] == [7, 8]
    assert await store.read_snapshot_and_stream(keys, "another-projector", 10) == (
        None,
        [e async for batch in store.read_stream(keys, 0, 10) for e in batch],
    )


async def test_a_snapshot_ahead_of_the_stream_comes_alone(store: PostgresEventStore) -> None:
    keys = await stream_of(store, 10)
    await store.snapshot_store().save(snapshot_at(keys, 50))
    snapshot, events = await store.read_snapshot_and_stream(keys, "account", 1000)
    assert snapshot is not None and snapshot.version == 50
    assert events == []


async def test_only_its_own_snapshot_store_is_read_together(store: PostgresEventStore) -> None:
    assert store.reads_snapshots_of(store.snapshot_store())
    assert not store.reads_snapshots_of(InMemorySnapshotStore())
    elsewhere = await PostgresEventStore.connect(
        require_env("SEKIBAN_POSTGRES_DSN"), schema=f"t_{uuid.uuid4().hex[:12]}"
    )
    try:
        assert not store.reads_snapshots_of(elsewhere.snapshot_store())
    finally:
        await elsewhere.drop_schema()
        await elsewhere.close()


class CountingPool:
    """A pool that records the statements sent through it."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.statements: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.pool, name)

        async def counted(sql: str, *args: Any) -> Any:
            self.statements.append(sql)
            return await method(sql, *args)

        return counted


async def test_a_snapshot_load_is_one_statement(
    store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = bank_domain()
    executor = SekibanExecutor(
        domain,
        store,
        snapshot_store=store.snapshot_store(),
        snapshot_config=SnapshotConfiguration(count_threshold=7),
    )
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(9):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    pool = CountingPool(store._pool)
    monkeypatch.setattr(store, "_pool", pool)
    optimizer = EventReplayOptimizer(store, Serializer(domain), store.snapshot_store())
    result = await optimizer.load(domain.projector(AccountProjector), keys)
    assert result.statistics.from_snapshot and result.statistics.events_replayed == 3
    assert len(pool.statements) == 1
