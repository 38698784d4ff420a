"""Events: the payloads a domain defines and the envelope the framework wraps them in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.sortable_id import SortableUniqueId


class EventPayload(BaseModel):
    """Base of every event payload: an immutable, validated fact of the domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")


P = TypeVar("P", bound=EventPayload, covariant=True)


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Why an event happened and on whose behalf."""

    causation_id: str = ""
    correlation_id: str = ""
    executed_user: str = ""


@dataclass(frozen=True, slots=True)
class Event(Generic[P]):
    """An event payload in its envelope: identity, position in its stream, metadata."""

    id: uuid.UUID
    sortable_unique_id: SortableUniqueId
    version: int
    partition_keys: PartitionKeys
    payload: P
    timestamp: datetime
    metadata: EventMetadata = field(default_factory=EventMetadata)
