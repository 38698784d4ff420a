"""The pure domain model: no I/O, no clock reads."""

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
    CommandValidationError,
    ConcurrencyError,
    ConfigurationError,
    DuplicateTypeError,
    EventStreamCorruptError,
    InvalidPartitionKeysError,
    InvalidSortableUniqueIdError,
    PayloadTooLargeError,
    SekibanError,
    SerializationError,
    UnknownTypeError,
)

__all__ = [
    "Aggregate",
    "AggregateListProjector",
    "AggregatePayload",
    "AggregateProjector",
    "AggregateStateError",
    "Command",
    "CommandContext",
    "CommandResponse",
    "CommandValidationError",
    "ConcurrencyError",
    "ConfigurationError",
    "DomainTypes",
    "DuplicateTypeError",
    "EmptyAggregatePayload",
    "Event",
    "EventMetadata",
    "EventPayload",
    "EventStreamCorruptError",
    "InvalidPartitionKeysError",
    "InvalidSortableUniqueIdError",
    "ListQuery",
    "ListQueryResult",
    "MultiProjector",
    "PartitionKeys",
    "PayloadTooLargeError",
    "Query",
    "SekibanError",
    "SerializationError",
    "Serializer",
    "SortableUniqueId",
    "StoredEvent",
    "UnknownTypeError",
]
