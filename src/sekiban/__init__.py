"""sekiban: event sourcing for Python with snapshot management."""

from sekiban.core.aggregate import Aggregate, AggregatePayload, EmptyAggregatePayload
from sekiban.core.command import Command, CommandContext, CommandResponse
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import (
    AggregateListProjector,
    ListQuery,
    ListQueryResult,
    MultiProjector,
    Query,
)
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.errors import (
    AggregateStateError,
    CommandIdMismatchError,
    CommandValidationError,
    ConcurrencyError,
    ConfigurationError,
    DaprUnavailableError,
    DuplicateCommandError,
    DuplicateTypeError,
    EventStreamCorruptError,
    InvalidAppendError,
    InvalidHandlerResultError,
    InvalidPartitionKeysError,
    InvalidReadError,
    InvalidSortableUniqueIdError,
    MissingExtraError,
    PayloadTooLargeError,
    RemoteCommandError,
    SekibanError,
    SerializationError,
    SidecarError,
    SnapshotRejectedError,
    StoreAuthenticationError,
    StoreConnectionError,
    UnknownTypeError,
)
from sekiban.executor import Executor, SekibanExecutor
from sekiban.retry import RetryPolicy

__all__ = [
    "Aggregate",
    "AggregateListProjector",
    "AggregatePayload",
    "AggregateProjector",
    "AggregateStateError",
    "Command",
    "CommandContext",
    "CommandIdMismatchError",
    "CommandResponse",
    "CommandValidationError",
    "ConcurrencyError",
    "ConfigurationError",
    "DaprUnavailableError",
    "DomainTypes",
    "DuplicateCommandError",
    "DuplicateTypeError",
    "EmptyAggregatePayload",
    "Event",
    "EventMetadata",
    "EventPayload",
    "EventStreamCorruptError",
    "Executor",
    "InvalidAppendError",
    "InvalidHandlerResultError",
    "InvalidPartitionKeysError",
    "InvalidReadError",
    "InvalidSortableUniqueIdError",
    "ListQuery",
    "ListQueryResult",
    "MissingExtraError",
    "MultiProjector",
    "PartitionKeys",
    "PayloadTooLargeError",
    "Query",
    "RemoteCommandError",
    "RetryPolicy",
    "SekibanError",
    "SekibanExecutor",
    "SerializationError",
    "Serializer",
    "SidecarError",
    "SnapshotRejectedError",
    "SortableUniqueId",
    "StoreAuthenticationError",
    "StoreConnectionError",
    "StoredEvent",
    "UnknownTypeError",
]
