"""Aggregate projectors: pure functions from (state, event) to the next state."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar

from sekiban.core.aggregate import Aggregate, AggregatePayload, EmptyAggregatePayload
from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import EventStreamCorruptError


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


class AggregateProjector(ABC):
    """Folds a stream's events into an aggregate payload.

    Subclasses implement `project` as a pure function and set `version`. Bump `version`
    whenever `project` would give a different result for stored events: snapshots
    taken by another version are then discarded and the aggregate is replayed.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _kebab(cls.__name__)

    def initial_payload(self) -> AggregatePayload:
        """The payload before the first event."""
        return EmptyAggregatePayload()

    @abstractmethod
    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        """The payload after `event`. Return `payload` unchanged for events it ignores."""

    def empty_aggregate(self, partition_keys: PartitionKeys) -> Aggregate[AggregatePayload]:
        """The aggregate at version 0."""
        return Aggregate(self.initial_payload(), partition_keys, 0, None, self.name, self.version)

    def fold(
        self, aggregate: Aggregate[AggregatePayload], events: Iterable[Event[EventPayload]]
    ) -> Aggregate[AggregatePayload]:
        """Apply `events`, which must continue `aggregate` at consecutive versions.

        Raises `EventStreamCorruptError` at a gap or repeat in the versions.
        """
        # The hot path of every load: one Aggregate at the end, not one per event.
        payload, version, last = aggregate.payload, aggregate.version, None
        project = self.project
        for event in events:
            if event.version != version + 1:
                raise EventStreamCorruptError(
                    f"stream {aggregate.partition_keys} jumps from version "
                    f"{version} to {event.version}"
                )
            payload, version, last = project(payload, event), event.version, event
        return aggregate if last is None else aggregate.apply(last, payload)
