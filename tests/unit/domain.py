"""Small helpers over the bank example for unit tests."""

from __future__ import annotations

from examples.bank import AccountProjector, ActiveAccount
from sekiban import Aggregate, AggregatePayload, PartitionKeys, SortableUniqueId


def account_at(keys: PartitionKeys, version: int, balance: int = 0) -> Aggregate[AggregatePayload]:
    return Aggregate(
        ActiveAccount(owner="alice", balance=balance, transactions=version - 1),
        keys,
        version,
        SortableUniqueId.generate(),
        AccountProjector.name,
        AccountProjector.version,
    )
