"""Appending a commit: the conditional INSERT that is the atomic append and its version
check, the stream's version for a conflict, and the events encoded as one JSON row."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from sekiban.core.serialization import StoredEvent
from sekiban.stores.sqlite.schema import STREAM

# Insert one commit only if the stream ends at the expected version. The WHERE runs
# inside the write transaction, which SQLite gives one writer at a time, so it sees
# every commit before it; the unique (stream, last_version) is a second line. The key
# is the position of the commit's last event (the first parameter: its event count).
# A command id already in the stream fails the INSERT on the unique index
# `commits_command`, in the same statement.
_APPEND = f"""
INSERT INTO commits
    (position, root_partition_key, aggregate_group, aggregate_id, first_version,
     last_version, events, command_id)
SELECT COALESCE((SELECT MAX(position) FROM commits), 0) + ?, ?, ?, ?, ?, ?, ?, ?
WHERE COALESCE((SELECT MAX(last_version) FROM commits WHERE {STREAM}), 0) = ?
"""


def insert(connection: sqlite3.Connection, parameters: tuple[Any, ...]) -> bool:
    return bool(connection.execute(_APPEND, parameters).rowcount)


def stream_version(connection: sqlite3.Connection, stream: tuple[str, str, str]) -> int:
    (version,) = connection.execute(
        f"SELECT COALESCE(MAX(last_version), 0) FROM commits WHERE {STREAM}", stream
    ).fetchone()
    return int(version)


def encode_events(events: Sequence[StoredEvent]) -> str:
    """The events as one JSON array of arrays (`decode_events` reads it back).

    pydantic-core's encoder: a quarter of the cost of `json`'s for one event. It writes
    non-ASCII text as UTF-8 rather than `\\u` escapes (both read back the same); every
    string is valid UTF-8 by then (`check_append` refuses lone surrogates in the text
    fields, payloads are pydantic's own JSON).
    """
    stamp: datetime | None = None
    text = ""
    rows = []
    for e in events:
        if e.timestamp is not stamp:  # one command's events share one timestamp
            stamp, text = e.timestamp, e.timestamp.isoformat()
        rows.append(
            (
                e.id,
                e.sortable_unique_id,
                e.event_type,
                e.payload,
                text,
                e.causation_id,
                e.correlation_id,
                e.executed_user,
            )
        )
    return to_json(rows).decode()
