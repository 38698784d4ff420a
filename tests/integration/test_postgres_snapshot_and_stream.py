"""PostgreSQL loads a snapshot and the events after it in one statement."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples.bank import AccountProjector, bank_domain
from sekiban import Serializer
from sekiban.loading import EventReplayOptimizer
from sekiban.stores import InMemorySnapshotStore
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import require_env
from tests.support import bank_account_with_snapshot

pytestmark = pytest.mark.postgres


async def test_only_its_own_snapshot_store_is_read_together(store: PostgresEventStore) -> None:
    assert store.reads_snapshots_of(store.snapshot_store())
    assert not store.reads_snapshots_of(InMemorySnapshotStore())
    elsewhere = await PostgresEventStore.open(
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
    _, keys = await bank_account_with_snapshot(store, store.snapshot_store())
    pool = CountingPool(store._pool)
    monkeypatch.setattr(store, "_pool", pool)
    optimizer = EventReplayOptimizer(store, Serializer(domain), store.snapshot_store())
    result = await optimizer.load(domain.projector(AccountProjector), keys)
    assert result.statistics.from_snapshot and result.statistics.events_replayed == 3
    assert len(pool.statements) == 1
