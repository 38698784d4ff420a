"""Decoding a commit's rows straight into events (`Serializer.commit_events`, the SQLite
replay path) gives what `to_event` of each `StoredEvent` gives, errors included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from sekiban import (
    Event,
    EventPayload,
    PartitionKeys,
    SekibanError,
    SerializationError,
    Serializer,
    StoredEvent,
)
from sekiban.stores.sqlite.reading import decode_events
from tests.evolving_domain import new_domain

SERIALIZER = Serializer(new_domain())
KEYS = PartitionKeys.generate("member")
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

# Current names, an alias, old schema versions to upcast, an unknown name; payloads
# that validate, that only upcast, that fail, that are not JSON or not text.
TYPES = ["MemberJoined@2", "PointsAwarded@2", "PointsEarned@2", "MemberJoined", "PointsEarned"]
PAYLOADS = [
    '{"first_name": "ann", "last_name": "lee"}',
    '{"points": 3, "reason": "won"}',
    '{"full_name": "ann lee", "referrer": "bob"}',
    '{"amount": "7", "note": "won"}',
    '{"points": "many", "reason": "won"}',
    '{"first_name": "ann", "last_name": "lee", "gone": 1}',
    "not json",
    "[" * 1_000 + "]" * 1_000,
]
IDS = st.one_of(st.uuids().map(str), st.uuids().map(str), st.just("not-a-uuid"))
SORTABLE_IDS = st.one_of(st.integers(0, 10**30 - 1).map("{:030d}".format), st.just("x"))


def envelope(event_type: str, payload: Any, event_id: str, sortable: str, at: str) -> list[Any]:
    return [event_id, sortable, event_type, payload, at, "c", "k", "u"]


rows = st.lists(
    st.builds(
        envelope,
        st.sampled_from([*TYPES, *TYPES, *TYPES, "Unknown@1"]),
        st.sampled_from([*PAYLOADS[:4] * 6, *PAYLOADS[4:], 5]),
        IDS,
        SORTABLE_IDS,
        st.sampled_from([AT.isoformat(), (AT + timedelta(seconds=1)).isoformat()]),
    ),
    min_size=1,
    max_size=12,
)


def outcome(decode: Any) -> tuple[str, Any]:
    try:
        return "events", list(decode())
    except SekibanError as error:
        return type(error).__name__, str(error)


def plain(commit: list[Any], first_version: int) -> list[Event[EventPayload]]:
    """What every other store does: the `StoredEvent`s, then `to_event` of each."""
    text = to_json(commit).decode()
    last = first_version + len(commit) - 1
    return [SERIALIZER.to_event(e) for e in decode_events(text, KEYS, first_version, last, None)]


@settings(max_examples=300, deadline=None)
@given(rows, st.integers(1, 1_000))
def test_commit_events_equal_to_event_of_each_stored_event(
    commit: list[Any], first_version: int
) -> None:
    fast = outcome(lambda: SERIALIZER.commit_events(commit, KEYS, first_version))
    assert fast == outcome(lambda: plain(commit, first_version))


@settings(max_examples=200, deadline=None)
@given(rows, st.lists(st.integers(1, 3), min_size=12, max_size=12))
def test_row_events_equal_to_event_of_each_stored_event(
    commit: list[Any], steps: list[int]
) -> None:
    # One event per row (PostgreSQL): each row's own version, perhaps with gaps (the
    # fold finds them), and the timestamp as a datetime.
    versions = [sum(steps[: i + 1]) for i in range(len(commit))]
    rows = [
        (v, *row[:4], datetime.fromisoformat(row[4]), *row[5:])
        for v, row in zip(versions, commit, strict=True)
    ]
    stored = [StoredEvent(*row[1:3], row[0], KEYS, *row[3:]) for row in rows]
    fast = outcome(lambda: SERIALIZER.row_events(rows, KEYS))
    assert fast == outcome(lambda: [SERIALIZER.to_event(e) for e in stored])


def test_a_malformed_row_names_the_commit() -> None:
    good = envelope("MemberJoined@2", PAYLOADS[0], str(uuid.uuid4()), "0" * 30, AT.isoformat())
    for bad in ([*good[:7]], 7, [*good[:4], "yesterday", *good[5:]]):
        with pytest.raises(SerializationError, match=rf"the commit of {KEYS} from version 4"):
            list(SERIALIZER.commit_events([good, bad], KEYS, 4))
