"""Multi-projectors that declare their groups catch up on PostgreSQL through the
server-side filter (`GroupFilteredReader`): the same state as an unfiltered catch-up,
a position past the other groups' events, and read-your-writes for any write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from examples.bank import AccountList, ActiveAccountsQuery, DepositMoney, OpenAccount, bank_domain
from sekiban import PartitionKeys, SekibanExecutor, Serializer, StoredEvent
from sekiban.projections import ConsistencyToken, Projection
from sekiban.stores.postgres import PostgresEventStore
from sekiban.stores.protocols import GroupFilteredReader
from tests.support import stored_events

pytestmark = pytest.mark.postgres


class Unfiltered:
    """The store's `read_all` only: a projection reads every event through it."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store

    def read_all(
        self, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        return self.store.read_all(after_position, batch_size)


async def test_a_grouped_projection_reads_through_the_server_filter(
    store: PostgresEventStore,
) -> None:
    assert isinstance(store, GroupFilteredReader)
    domain = bank_domain()
    executor = SekibanExecutor(domain, store)
    for owner in ("ann", "bo"):
        opened = await executor.command(OpenAccount(owner=owner))
        await executor.command(
            DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=5)
        )
    other = PartitionKeys.generate("other")
    await store.append(stored_events(other, 1, 3), 0)  # the newest events: another group

    serializer = Serializer(domain)
    filtered = Projection(AccountList(), serializer, {})
    seen: list[str] = []
    apply = filtered._apply

    async def spy(batch: list[StoredEvent]) -> int:
        seen.extend(e.partition_keys.group for e in batch)
        return await apply(batch)

    filtered._apply = spy  # type: ignore[method-assign]
    await filtered.catch_up(store, batch_size=2)
    assert set(seen) == {"account"}  # the server sent no other group's row
    plain = Projection(AccountList(), serializer, {})
    await plain.catch_up(Unfiltered(store), batch_size=2)  # type: ignore[arg-type]
    assert filtered.state == plain.state and len(filtered.state) == 2
    assert filtered.events_applied == plain.events_applied == 4
    assert filtered.position >= plain.position  # past the other group's events too

    # Read-your-writes for a write the projection does not read ends at once.
    token = ConsistencyToken(other, 3)
    answer = await executor.query(ActiveAccountsQuery(), after=token, timeout=timedelta(seconds=5))
    assert answer.total_count == 2
