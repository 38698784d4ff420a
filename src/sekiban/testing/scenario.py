"""Given/when/then for commands, comfortable from pytest, over any event store."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import utc_now
from sekiban.core.command import Command, CommandResponse
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import Event, EventMetadata, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import Query
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.executor import SekibanExecutor
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.stores.memory import InMemoryEventStore, InMemorySnapshotStore
from sekiban.stores.protocols import EventStore, SnapshotStore

R = TypeVar("R")


@dataclass(frozen=True)
class WhenResult:
    """What a `when` did: the response, or the error the command raised."""

    response: CommandResponse | None
    error: BaseException | None

    def then_events(self, *payloads: EventPayload) -> CommandResponse:
        """Assert the command succeeded and appended exactly these payloads, in order."""
        response = self.then_succeeded()
        actual = [e.payload for e in response.events]
        assert actual == list(payloads), f"expected events {list(payloads)}, got {actual}"
        return response

    def then_no_events(self) -> CommandResponse:
        return self.then_events()

    def then_succeeded(self) -> CommandResponse:
        if self.error is not None:
            raise AssertionError(f"the command failed: {self.error!r}") from self.error
        assert self.response is not None
        return self.response

    def then_error(
        self, error_type: type[BaseException], match: str | None = None
    ) -> BaseException:
        """Assert the command raised `error_type` (whose message matches `match`)."""
        if self.error is None:
            raise AssertionError(f"expected {error_type.__name__}, but the command succeeded")
        if not isinstance(self.error, error_type):
            raise AssertionError(
                f"expected {error_type.__name__}, got {self.error!r}"
            ) from self.error
        if match is not None and not re.search(match, str(self.error)):
            raise AssertionError(f"{self.error!r} does not match {match!r}")
        return self.error


class Scenario:
    """A test's executor and the steps that set up, act and check.

    By default events and snapshots live in memory; pass any stores to run the same
    scenario against them. Every method is async (`await scenario.given(...)`).
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore | None = None,
        *,
        snapshot_store: SnapshotStore | None = None,
        snapshot_config: SnapshotConfiguration | None = None,
    ) -> None:
        self.domain = domain
        self.snapshot_store = snapshot_store or InMemorySnapshotStore()
        self.executor = SekibanExecutor(
            domain,
            event_store or InMemoryEventStore(),
            snapshot_store=self.snapshot_store,
            snapshot_config=snapshot_config or SnapshotConfiguration(strategy="none"),
        )

    @property
    def event_store(self) -> EventStore:
        return self.executor.event_store

    async def given(self, *commands: Command) -> list[CommandResponse]:
        """Run commands that must succeed, as the history the test starts from."""
        return [await self.executor.command(c) for c in commands]

    async def given_events(
        self, partition_keys: PartitionKeys, *payloads: EventPayload
    ) -> list[Event[EventPayload]]:
        """Append events to a stream directly, after whatever it already holds."""
        return await append_events(self.executor, partition_keys, payloads, utc_now())

    async def when(self, command: Command, metadata: EventMetadata | None = None) -> WhenResult:
        """Run the command under test, capturing its response or its error."""
        try:
            return WhenResult(await self.executor.command(command, metadata), None)
        except Exception as error:
            return WhenResult(None, error)

    async def then_aggregate(
        self,
        projector: type[AggregateProjector],
        partition_keys: PartitionKeys,
        payload: AggregatePayload | None = None,
        *,
        version: int | None = None,
    ) -> Aggregate[AggregatePayload]:
        """Assert the aggregate's payload and/or version; returns the aggregate."""
        aggregate = await self.executor.load_aggregate(projector, partition_keys)
        if payload is not None:
            assert aggregate.payload == payload, f"expected {payload!r}, got {aggregate.payload!r}"
        if version is not None:
            assert aggregate.version == version, (
                f"expected version {version}, got {aggregate.version}"
            )
        return aggregate

    async def then_query(self, query: Query[R], expected: Any) -> R:
        """Assert `query` answers `expected`; returns the answer."""
        answer = await self.executor.query(query)
        assert answer == expected, f"{type(query).__name__} answered {answer!r}, not {expected!r}"
        return answer

    async def stream(self, partition_keys: PartitionKeys) -> Sequence[Event[EventPayload]]:
        """Every stored event of one stream, decoded."""
        to_event = self.executor.repository.serializer.to_event
        return [to_event(e) async for b in self.event_store.read_stream(partition_keys) for e in b]

    async def aggregate_version(self, partition_keys: PartitionKeys) -> int:
        events = await self.stream(partition_keys)
        return events[-1].version if events else 0


async def append_events(
    executor: SekibanExecutor,
    partition_keys: PartitionKeys,
    payloads: Sequence[EventPayload],
    now: datetime,
) -> list[Event[EventPayload]]:
    """Append `payloads` to a stream after whatever it holds, bypassing commands (for
    tests' histories); the events appended."""
    serializer = executor.repository.serializer
    version = 0
    async for batch in executor.event_store.read_stream(partition_keys):
        version = batch[-1].version
    events: list[Event[EventPayload]] = [
        Event(
            uuid.uuid4(),
            SortableUniqueId.generate(),
            version + i,
            partition_keys,
            p,
            now,
            EventMetadata(executed_user="test"),
        )
        for i, p in enumerate(payloads, 1)
    ]
    if events:
        await executor.event_store.append([serializer.to_stored(e) for e in events], version)
    return events
