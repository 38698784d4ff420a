"""Builders shared by the test suites."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sekiban import PartitionKeys, SortableUniqueId, StoredEvent


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
