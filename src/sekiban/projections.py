"""Multi-projections kept in memory and caught up from the global event order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sekiban import telemetry
from sekiban.core.domain_types import DomainTypes
from sekiban.core.query import MultiProjector, Query
from sekiban.core.serialization import Serializer
from sekiban.stores.protocols import EventStore

R = TypeVar("R")


@dataclass(slots=True)
class _Projection:
    state: Any
    position: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Projections:
    """Answers queries from multi-projections that catch up on every query.

    Each multi-projector's state lives in this process and resumes from the last global
    position it saw, so a query reads only the events appended since the previous one.
    """

    def __init__(self, domain: DomainTypes, event_store: EventStore) -> None:
        self.domain = domain
        self.event_store = event_store
        self._to_event = Serializer(domain).to_event
        self._projections: dict[type[MultiProjector[Any]], _Projection] = {}

    async def query(self, query: Query[R]) -> R:
        projector = self.domain.multi_projector(type(query).multi_projector)
        projection = self._projections.get(type(projector))
        if projection is None:
            projection = self._projections.setdefault(
                type(projector), _Projection(projector.initial_state())
            )
        attributes = {
            "sekiban.query.type": type(query).__name__,
            "sekiban.projector.name": projector.name,
            "sekiban.projector.version": projector.version,
        }
        with telemetry.span("sekiban.query", attributes):
            async with projection.lock:
                await self._catch_up(projector, projection)
                return query.handle(projection.state)

    async def _catch_up(self, projector: MultiProjector[Any], projection: _Projection) -> None:
        start, applied = projection.position, 0
        attributes = {
            "sekiban.projector.name": projector.name,
            "sekiban.projection.position": start,
        }
        with telemetry.span("sekiban.projection.catch_up", attributes) as span:
            async for batch in self.event_store.read_all(projection.position):
                state = projection.state
                for stored in batch:
                    state = projector.project(state, self._to_event(stored))
                projection.state = state
                projection.position = batch[-1].position or projection.position
                applied += len(batch)
            span.set_attribute("sekiban.events.applied", applied)
        # The events applied are how far behind the projection was when asked.
        telemetry.projection_caught_up(projector.name, applied)
