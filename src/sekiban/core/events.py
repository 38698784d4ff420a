"""Events: the payloads a domain defines and the envelope the framework wraps them in."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from sekiban.core.fastpaths import trusted_constructor, uuid_from_int
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.sortable_id import SortableUniqueId


def new_event_id() -> uuid.UUID:
    """A random (version 4) UUID for an event, without an OS random read per event.

    Event ids identify, they protect nothing: the process's seeded generator (reseeded
    in forked children) gives the same 122 random bits at a fraction of the cost.
    """
    return uuid_from_int((random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET)


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


class EventPayload(BaseModel):
    """Base of every event payload: an immutable, validated fact of the domain.

    `schema_version` is the version of the payload's shape that new events are written
    at (bump it when the shape changes, and register an upcaster from the previous one
    on `DomainTypes`). `read_extra` says what reading does with a stored field the type
    no longer has: "ignore" (the default) drops it, "forbid" makes the event unreadable.
    Building a payload in code always forbids unknown fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: ClassVar[int] = 1
    read_extra: ClassVar[Literal["ignore", "forbid"]] = "ignore"


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


rebuild_event = trusted_constructor(Event)
"""`Event(...)` with every field positional, for envelopes the framework itself made or
read back from a store."""
