"""The append statement: one `INSERT ... SELECT FROM unnest(...)` that is atomic by
itself and inserts nothing unless the expected version exists (its command id, on the
first event's row, is checked by the unique index in the same statement); and the
stream's version a conflict reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sekiban.core.serialization import StoredEvent
from sekiban.stores.postgres.schema import POSITION_BITS, STREAM, WRITER_LOCK_CLASS, Tables


def insert_head(t: Tables) -> str:
    """The start every append statement shares (a lone append here, a group in
    `group_commit`): the writer lock, then the INSERT of every column.

    The append takes its table's writer lock before its transaction gets an id (the
    CTE runs first: the position needs it), so while it runs `read_all` sees it in
    pg_locks with that id. Shared: appends never wait for each other on it.
    """
    return f"""
WITH writer AS MATERIALIZED (
    SELECT pg_current_xact_id()::text::bigint << {POSITION_BITS} AS base
    FROM (SELECT pg_advisory_xact_lock_shared({WRITER_LOCK_CLASS}, {t.writer_lock})) AS locked
)
INSERT INTO {t.events} (position, root_partition_key, aggregate_group, aggregate_id, version,
    id, sortable_unique_id, event_type, payload, timestamp,
    causation_id, correlation_id, executed_user, command_id)"""


def event_columns(events: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    """The events' own fields as the statements' arrays: id, sortable id, type, payload,
    timestamp, causation id, correlation id, user."""
    return (
        [e.id for e in events],
        [e.sortable_unique_id for e in events],
        [e.event_type for e in events],
        [e.payload for e in events],
        [e.timestamp for e in events],
        [e.causation_id for e in events],
        [e.correlation_id for e in events],
        [e.executed_user for e in events],
    )


def append_sql(t: Tables) -> str:
    return f"""{insert_head(t)}
SELECT writer.base + e.ordinal, $1, $2, $3,
    $4::integer + e.ordinal, e.id, e.sortable_unique_id, e.event_type, e.payload, e.timestamp,
    e.causation_id, e.correlation_id, e.executed_user,
    CASE WHEN e.ordinal = 1 THEN $13::text END
FROM writer, unnest($5::uuid[], $6::text[], $7::text[], $8::json[], $9::timestamptz[],
            $10::text[], $11::text[], $12::text[])
    WITH ORDINALITY AS e(id, sortable_unique_id, event_type, payload, timestamp,
                         causation_id, correlation_id, executed_user, ordinal)
WHERE $4::integer = 0 OR EXISTS (SELECT FROM {t.events} WHERE {STREAM} AND version = $4)"""


def stream_version_sql(t: Tables) -> str:
    return f"SELECT coalesce(max(version), 0) FROM {t.events} WHERE {STREAM}"
