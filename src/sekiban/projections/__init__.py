"""Multi-projections: caught up from the global event order, persisted in a projection
store, restored on start, rebuilt when their projector changes.

- `Projections` answers queries (`SekibanExecutor.projections` is one).
- `ProjectionStore` keeps states (`InMemoryProjectionStore`, and one beside each event
  store: `event_store.projection_store()`); `BlobStore` keeps large ones out of line.
- `ConsistencyToken` and `query(..., after=...)` give read-your-writes.
- `ProjectionRunner` keeps projections caught up continuously (`sekiban projections
  run`), on the general `SubscriptionRunner`; `ProjectionStatus` says where each stands.
"""

from sekiban.projections.blobs import BlobStore, DirectoryBlobStore
from sekiban.projections.codec import AggregateMapCodec, JsonStateCodec, StateCodec
from sekiban.projections.consistency import ConsistencyToken
from sekiban.projections.manager import ProjectionCounters, ProjectionOptions, Projections
from sekiban.projections.projection import EventFilter, Projection
from sekiban.projections.runner import ProjectionRunner, Subscriber, SubscriptionRunner
from sekiban.projections.status import ProjectionStatus
from sekiban.projections.store import InMemoryProjectionStore, ProjectionRecord, ProjectionStore

__all__ = [
    "AggregateMapCodec",
    "BlobStore",
    "ConsistencyToken",
    "DirectoryBlobStore",
    "EventFilter",
    "InMemoryProjectionStore",
    "JsonStateCodec",
    "Projection",
    "ProjectionCounters",
    "ProjectionOptions",
    "ProjectionRecord",
    "ProjectionRunner",
    "ProjectionStatus",
    "ProjectionStore",
    "Projections",
    "StateCodec",
    "Subscriber",
    "SubscriptionRunner",
]
