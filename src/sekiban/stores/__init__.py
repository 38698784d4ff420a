"""Event stores and snapshot stores."""

from sekiban.stores.memory import InMemoryEventStore, InMemorySnapshotStore
from sekiban.stores.protocols import EventStore, InvalidAppendError, SnapshotStore

__all__ = [
    "EventStore",
    "InMemoryEventStore",
    "InMemorySnapshotStore",
    "InvalidAppendError",
    "SnapshotStore",
]
