"""The read statements (a stream, all events, a snapshot with its stream) and the
events back from their rows."""

from __future__ import annotations

from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent, rebuild_stored_event
from sekiban.stores.postgres.schema import POSITION_BITS, STREAM, WRITER_LOCK_CLASS, Tables
from sekiban.stores.snapshot_rows import SNAPSHOT_COLUMNS

ENVELOPE_COLUMNS = (
    "version, id::text, sortable_unique_id, event_type, payload, timestamp, "
    "causation_id, correlation_id, executed_user"
)
"""The columns `Serializer.row_events` decodes (a replay has no use for positions)."""
EVENT_COLUMNS = f"{ENVELOPE_COLUMNS}, position"


def read_stream_sql(t: Tables, *, columns: str = EVENT_COLUMNS) -> str:
    return (
        f"SELECT {columns} FROM {t.events} WHERE {STREAM} AND version > $4 "
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


def read_bound_sql(t: Tables) -> str:
    """The lowest transaction id an append to `t` may still commit rows under: the
    oldest append in flight (its writer lock's holder), else the next id to be given.

    pg_locks shows 32-bit ids: each is widened to 64 bits as the id that many steps
    before the next one (an id in flight is never 2**31 or more behind it).
    """
    return f"""
WITH next AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS id),
writers AS (
    SELECT own.transactionid::text::bigint AS id32
    FROM pg_locks AS writer
    JOIN pg_locks AS own ON own.virtualtransaction = writer.virtualtransaction
        AND own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
    WHERE writer.locktype = 'advisory' AND writer.granted AND writer.objsubid = 2
        AND writer.classid = {WRITER_LOCK_CLASS}
        AND writer.objid = {t.writer_lock}
        AND writer.database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT least(next.id, min(next.id - (((next.id - writers.id32) % 4294967296) + 4294967296)
    % 4294967296))
FROM next LEFT JOIN writers ON true GROUP BY next.id"""


def read_all_sql(t: Tables, *, of_groups: bool = False) -> str:
    # $3 is `read_bound_sql`'s answer, from an earlier statement: this one's snapshot
    # is newer, so every append below the bound has ended and is visible, or never will be.
    # With `of_groups`, $4 is the groups to keep: the server skips the others' rows.
    groups = " AND aggregate_group = ANY($4::text[])" if of_groups else ""
    return (
        f"SELECT {EVENT_COLUMNS}, root_partition_key, aggregate_group, aggregate_id "
        f"FROM {t.events} WHERE position > $1 AND position < ($3::bigint << {POSITION_BITS})"
        f"{groups} ORDER BY position LIMIT $2"
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
