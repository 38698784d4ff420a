"""The read statements (a stream, all events, a snapshot with its stream) and the
events back from their rows."""

from __future__ import annotations

from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent, rebuild_stored_event
from sekiban.stores.postgres.schema import POSITION_BITS, STREAM, Tables
from sekiban.stores.snapshot_rows import SNAPSHOT_COLUMNS

EVENT_COLUMNS = (
    "version, id::text, sortable_unique_id, event_type, payload, timestamp, "
    "causation_id, correlation_id, executed_user, position"
)


def read_stream_sql(t: Tables) -> str:
    return (
        f"SELECT {EVENT_COLUMNS} FROM {t.events} WHERE {STREAM} AND version > $4 "
        f"ORDER BY version LIMIT $5"
    )


def read_command_sql(t: Tables) -> str:
    # The command id is on the commit's first row; the commit's other rows are the
    # stream's rows of the same transaction: positions (xid << 16) + 1, 2, ...
    return f"""
WITH c AS (SELECT position FROM {t.events} WHERE {STREAM} AND command_id = $4)
SELECT {EVENT_COLUMNS} FROM {t.events}
WHERE {STREAM} AND position >= (SELECT position FROM c)
    AND position < (((SELECT position FROM c) >> {POSITION_BITS}) + 1) << {POSITION_BITS}
ORDER BY version"""


def snapshot_and_stream_sql(t: Tables) -> str:
    # One statement, one round trip for a load: the snapshot row beside the events
    # from its version on (from version 1 without one). The full join puts the
    # snapshot's columns on the row of the event at its version, or on a row of
    # their own when that event is missing (the optimizer then discards it).
    snapshot_key = f"{STREAM} AND projector_name = $4"
    return f"""
WITH s AS (SELECT {SNAPSHOT_COLUMNS} FROM {t.snapshots} WHERE {snapshot_key}),
e AS (SELECT {EVENT_COLUMNS} FROM {t.events}
      WHERE {STREAM} AND version >= coalesce((SELECT version FROM s), 1)
      ORDER BY version LIMIT $5)
SELECT e.*, s.* FROM e FULL JOIN s ON e.version = s.version ORDER BY e.version"""


def read_all_sql(t: Tables) -> str:
    # The bound is a scalar subquery so it is computed once, from the statement's
    # own snapshot: the same snapshot that decides which rows are visible.
    return (
        f"SELECT {EVENT_COLUMNS}, root_partition_key, aggregate_group, aggregate_id "
        f"FROM {t.events} WHERE position > $1 AND position < ("
        f"SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {POSITION_BITS}"
        f") ORDER BY position LIMIT $2"
    )


def stored_event(row: Any, partition_keys: PartitionKeys) -> StoredEvent:
    """A row in the column order of `EVENT_COLUMNS`."""
    return rebuild_stored_event(
        row[1],
        row[2],
        row[0],
        partition_keys,
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
    )
