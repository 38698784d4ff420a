"""Event stores, and the snapshot and projection stores beside them, and `open_store`
to open one by URL.

The SQL and Cosmos stores load on first use, so their drivers (optional extras) are
needed only by the programs that use them.
"""

from importlib import import_module
from typing import Any

from sekiban.stores.leases import Lease, LeaseProvider
from sekiban.stores.memory import InMemoryEventStore, InMemorySnapshotStore
from sekiban.stores.protocols import (
    DecodingReader,
    EventCounter,
    EventNotifier,
    EventStore,
    GroupFilteredReader,
    SnapshotStore,
)
from sekiban.stores.urls import Stores, StoreUrl, open_store, parse_store_url, with_query

_LAZY = {
    "SqliteEventStore": "sekiban.stores.sqlite",
    "SqliteSnapshotStore": "sekiban.stores.sqlite",
    "SqliteProjectionStore": "sekiban.stores.sqlite",
    "PostgresEventStore": "sekiban.stores.postgres",
    "PostgresSnapshotStore": "sekiban.stores.postgres",
    "PostgresProjectionStore": "sekiban.stores.postgres",
    "CosmosEventStore": "sekiban.stores.cosmos",
    "CosmosSnapshotStore": "sekiban.stores.cosmos",
    "CosmosProjectionStore": "sekiban.stores.cosmos",
}

__all__ = [
    "DecodingReader",
    "EventNotifier",
    "EventCounter",
    "GroupFilteredReader",
    "EventStore",
    "InMemoryEventStore",
    "InMemorySnapshotStore",
    "Lease",
    "LeaseProvider",
    "SnapshotStore",
    "StoreUrl",
    "Stores",
    "open_store",
    "parse_store_url",
    "with_query",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sekiban.stores' has no attribute {name!r}")
