"""Stores that hand out a stream's events already decoded (`DecodingReader`: PostgreSQL
and SQLite) give what `read_stream` followed by `Serializer.to_event` gives."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sekiban import (
    Event,
    EventPayload,
    PartitionKeys,
    SerializationError,
    Serializer,
    SortableUniqueId,
    StoredEvent,
    UpcastError,
)
from sekiban.stores import DecodingReader
from tests.conformance.backends import BACKENDS
from tests.evolving_domain import new_domain

DecodingStore = Any  # an EventStore that is a DecodingReader
READERS = ("postgres", "sqlite")
SERIALIZER = Serializer(new_domain())
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
# Commit sizes: single events, a commit across a page of the SQLite reader, long ones.
COMMITS = [1, 7, 1, 250, 3, 600, 1, 1, 40]


@pytest.fixture(params=READERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DecodingStore]:
    async with BACKENDS[request.param](tmp_path) as (events, _):
        assert isinstance(events, DecodingReader)
        yield events


def stored(keys: PartitionKeys, version: int, payload: str = "") -> StoredEvent:
    """Event 1 joins (stored at schema version 1: upcast on reading); the others award
    points, some under the old type name, with two causations and a few timestamps."""
    if version == 1:
        event_type = "MemberJoined"
        payload = payload or '{"full_name": "ann lee", "referrer": "bob"}'
    elif version % 5 == 0:
        event_type = "PointsEarned"
        payload = payload or f'{{"amount": "{version}", "note": "n{version % 3}"}}'
    else:
        event_type = "PointsAwarded@2"
        payload = payload or f'{{"points": {version}, "reason": "r{version % 3}"}}'
    return StoredEvent(
        str(uuid.uuid4()),
        str(SortableUniqueId.generate()),
        version,
        keys,
        event_type,
        payload,
        AT + timedelta(seconds=version // 10),
        f"cause{version % 2}",
        "corr",
        "user",
    )


async def stream(store: DecodingStore, sizes: list[int], bad: int = 0) -> PartitionKeys:
    """A stream of commits of `sizes`; event `bad` (if any) fails to validate."""
    keys, version = PartitionKeys.generate("member"), 0
    for size in sizes:
        events = [
            stored(keys, v, '{"points": "many", "reason": "x"}' if v == bad else "")
            for v in range(version + 1, version + size + 1)
        ]
        await store.append(events, version)
        version += size
    return keys


async def decoded(
    store: DecodingStore, keys: PartitionKeys, after: int, batch: int
) -> list[Event[EventPayload]]:
    pages = store.read_stream_decoded(keys, after, batch, SERIALIZER)
    return [event async for page in pages for event in page]


async def plain(
    store: DecodingStore, keys: PartitionKeys, after: int, batch: int
) -> list[Event[EventPayload]]:
    pages = store.read_stream(keys, after, batch)
    return [SERIALIZER.to_event(e) async for page in pages for e in page]


@pytest.mark.parametrize(
    ("after", "batch"), [(0, 1000), (0, 1), (5, 3), (9, 250), (500, 64), (904, 10), (0, 7)]
)
async def test_decoded_reads_equal_read_stream_then_to_event(
    store: DecodingStore, after: int, batch: int
) -> None:
    keys = await stream(store, COMMITS)
    events = await decoded(store, keys, after, batch)
    assert events == await plain(store, keys, after, batch)
    assert [e.version for e in events] == list(range(after + 1, sum(COMMITS) + 1))


async def test_an_unknown_stream_decodes_to_nothing(store: DecodingStore) -> None:
    assert await decoded(store, PartitionKeys.generate("member"), 0, 10) == []


@pytest.mark.parametrize("bad", [1, 260, 904])
async def test_a_payload_that_fails_raises_what_to_event_raises(
    store: DecodingStore, bad: int
) -> None:
    keys = await stream(store, COMMITS, bad)
    kind = UpcastError if bad == 1 else SerializationError
    with pytest.raises(kind) as expected:
        await plain(store, keys, 0, 100)
    with pytest.raises(kind) as error:
        await decoded(store, keys, 0, 100)
    assert str(error.value) == str(expected.value)
    assert f"version {bad} of {keys}" in str(error.value)
