"""Builders shared by the test suites."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from examples.bank import DepositMoney, OpenAccount, bank_domain
from sekiban import PartitionKeys, SekibanExecutor, SortableUniqueId, StoredEvent
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import EventStore, SnapshotStore


def stored_events(
    keys: PartitionKeys,
    first_version: int,
    count: int,
    *,
    payload: str = '{"amount":1}',
    event_type: str = "MoneyDeposited",
) -> list[StoredEvent]:
    """`count` events of one stream at versions `first_version ...`."""
    now = datetime.now(UTC)
    return [
        StoredEvent(
            id=str(uuid.uuid4()),
            sortable_unique_id=SortableUniqueId.generate(),
            version=first_version + i,
            partition_keys=keys,
            event_type=event_type,
            payload=payload,
            timestamp=now,
            causation_id="cause",
            correlation_id="corr",
            executed_user="tester",
        )
        for i in range(count)
    ]


async def bank_account_with_snapshot(
    store: EventStore, snapshots: SnapshotStore, *, events: int = 10, every: int = 7
) -> tuple[SekibanExecutor, PartitionKeys]:
    """A bank account of `events` events (opened, then deposits of 1) written by an
    executor that snapshots every `every` events; the executor and the account's keys."""
    executor = SekibanExecutor(
        bank_domain(),
        store,
        snapshot_store=snapshots,
        snapshot_config=SnapshotConfiguration(count_threshold=every),
    )
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(events - 1):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    return executor, keys
