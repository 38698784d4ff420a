"""Reading commits: the stream, all-events and snapshot-and-stream queries, fetching
just enough rows for a batch, and the events decoded back from a commit row."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sekiban.core.events import Event, EventPayload
from sekiban.core.fastpaths import scan_json_value
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import (
    Serializer,
    StoredEvent,
    corrupt_commit,
    rebuild_stored_event,
)
from sekiban.errors import SerializationError
from sekiban.stores.snapshot_rows import SNAPSHOT_COLUMNS
from sekiban.stores.sqlite.schema import STREAM

# Reads go through the commits in order and stop once they hold a batch of events
# (`take`): a commit may hold any number of events, so a row count bounds nothing.
# Every read's rows start with (first, last): the commit's first and last version, or
# position, to count its events by.

READ_CHUNK = 250
"""Events one statement of `read_stream` or `read_all` fetches and decodes on the event
loop (about a millisecond) before other tasks get a turn."""

# The commits holding versions after ?, the first of them perhaps begun before it, with
# the global position of each one's first event.
READ_STREAM = f"""
SELECT first_version, last_version, events, position - last_version + first_version
FROM commits
WHERE {STREAM} AND last_version > ? ORDER BY last_version
"""

_SNAPSHOT_COLUMNS_COUNT = len(SNAPSHOT_COLUMNS.split(","))
# The snapshot (if any) on a first row, its columns after two NULLs; then the commits from
# the one holding its version (from version 1 without one), each with the position of
# its first event.
_SNAPSHOT_AND_STREAM = f"""
SELECT NULL, NULL, {SNAPSHOT_COLUMNS} FROM snapshots WHERE {STREAM} AND projector_name = ?
UNION ALL
SELECT * FROM (
    SELECT first_version, last_version, events, position - last_version + first_version,
        {", ".join(["NULL"] * (_SNAPSHOT_COLUMNS_COUNT - 2))}
    FROM commits
    WHERE {STREAM} AND last_version >= COALESCE(
        (SELECT version FROM snapshots WHERE {STREAM} AND projector_name = ?), 1)
    ORDER BY last_version)
"""

READ_ALL = """
SELECT position - last_version + first_version, position, events,
    root_partition_key, aggregate_group, aggregate_id, first_version, last_version
FROM commits WHERE position > ? ORDER BY position
"""


def head_position(connection: sqlite3.Connection) -> int:
    """The position of the last event written, 0 for none (the rowid's last entry)."""
    (head,) = connection.execute("SELECT COALESCE(MAX(position), 0) FROM commits").fetchone()
    return int(head)


def read_rows(
    connection: sqlite3.Connection, sql: str, parameters: tuple[Any, ...], after: int, limit: int
) -> list[Any]:
    return take(connection.execute(sql, parameters), after, limit)


def command_rows(
    connection: sqlite3.Connection, stream: tuple[str, str, str], command_id: str
) -> list[Any]:
    """The row of the stream's commit with `command_id` (the unique index finds it)."""
    return connection.execute(
        f"SELECT first_version, last_version, events, position - last_version + first_version "
        f"FROM commits WHERE {STREAM} AND command_id = ?",
        (*stream, command_id),
    ).fetchall()


def snapshot_and_stream_rows(
    connection: sqlite3.Connection,
    stream: tuple[str, str, str],
    projector_name: str,
    batch_size: int,
) -> tuple[Any, int, list[Any]]:
    """The snapshot row (or None), the version its events are read after, and the
    commit rows holding the first `batch_size` events from there."""
    parameters = (*stream, projector_name, *stream, *stream, projector_name)
    cursor = connection.execute(_SNAPSHOT_AND_STREAM, parameters)
    first = cursor.fetchone()
    if first is None or first[0] is not None:  # no snapshot row
        return None, 0, take(cursor, 0, batch_size, first)
    version = first[2]  # the events are read from the snapshot's version on
    after = version - 1 if isinstance(version, int) and version > 0 else 0
    return first, after, take(cursor, after, batch_size)


def take(cursor: sqlite3.Cursor, after: int, limit: int, first: Any = None) -> list[Any]:
    """Rows of (first, last, ...) from `cursor` (after `first`, if given) until they hold
    `limit` events after `after`, or the rows run out."""
    rows, count = [], 0
    try:
        for row in cursor if first is None else itertools.chain([first], cursor):
            rows.append(row)
            try:
                count += row[1] - max(row[0], after + 1) + 1
            except TypeError:
                raise SerializationError(
                    f"a commit row holds {row[0]!r} and {row[1]!r} as its first and last "
                    "version or position"
                ) from None
            if count >= limit:
                break
    finally:
        cursor.close()
    return rows


def stream_events(
    rows: list[Any], keys: PartitionKeys, after: int, *, positions: bool = False
) -> list[StoredEvent]:
    """The events after version `after` in rows of (first_version, last_version, events)
    and, with `positions`, the position of the commit's first event."""
    events: list[StoredEvent] = []
    for row in rows:
        first_version, last_version, text = row[0], row[1], row[2]
        first_position = row[3] if positions else None
        skip = max(0, after + 1 - first_version)  # a commit begun before `after`
        events += decode_events(text, keys, first_version, last_version, first_position)[skip:]
    return events


def stream_decoded(
    rows: list[Any], keys: PartitionKeys, after: int, serializer: Serializer
) -> Iterator[Event[EventPayload]]:
    """The events of `stream_events`, decoded by `serializer.commit_events` as the
    caller takes them, without the `StoredEvent`s in between."""
    for row in rows:
        first_version, last_version = row[0], row[1]
        envelopes = commit_envelopes(row[2], keys, first_version, last_version)
        skip = max(0, after + 1 - first_version)  # a commit begun before `after`
        if skip:
            envelopes = envelopes[skip:]
        yield from serializer.commit_events(envelopes, keys, first_version + skip)


def commit_envelopes(text: str, keys: PartitionKeys, first_version: int, last_version: int) -> Any:
    """A commit's JSON array of event rows, one per version from `first_version` to
    `last_version`; anything else raises `SerializationError` naming the commit."""
    try:
        rows, end = scan_json_value(text, 0)
        if not isinstance(rows, list):
            raise ValueError(f"a JSON {type(rows).__name__}, not an array")
        if end != len(text):
            raise ValueError(f"extra data after the JSON array at {end}")
        if len(rows) != last_version - first_version + 1:
            raise ValueError(f"{len(rows)} events for versions {first_version} to {last_version}")
    # StopIteration: not JSON; RecursionError: nested too deep for the C scanner.
    except (ValueError, TypeError, StopIteration, RecursionError) as error:
        raise corrupt_commit(keys, first_version, error) from None
    return rows


def decode_events(
    text: str,
    keys: PartitionKeys,
    first_version: int,
    last_version: int,
    first_position: int | None,
) -> list[StoredEvent]:
    stamp, timestamp = "", None
    events = []
    rows = commit_envelopes(text, keys, first_version, last_version)
    try:
        for i, row in enumerate(rows):
            event_id, sortable_id, event_type, payload, at, causation, correlation, user = row
            if at != stamp:
                stamp, timestamp = at, datetime.fromisoformat(at)
            position = None if first_position is None else first_position + i
            events.append(
                rebuild_stored_event(
                    event_id,
                    sortable_id,
                    first_version + i,
                    keys,
                    event_type,
                    payload,
                    timestamp,
                    causation,
                    correlation,
                    user,
                    position,
                )
            )
    except (ValueError, TypeError) as error:  # a row that is not eight fields
        raise corrupt_commit(keys, first_version, error) from None
    return events
