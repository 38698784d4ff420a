"""The PostgreSQL snapshot store: the latest snapshot per (aggregate, projector), one
row each, in the event store's schema."""

from __future__ import annotations

from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.postgres.faults import translate_faults
from sekiban.stores.postgres.schema import STREAM, Tables, stream_key
from sekiban.stores.protocols import ClosesOnExit
from sekiban.stores.snapshot_rows import (
    SNAPSHOT_COLUMNS,
    snapshot_columns,
    snapshot_from_columns,
)


class PostgresSnapshotStore(ClosesOnExit):
    """The latest snapshot per (aggregate, projector), one row each.

    Usually obtained from `PostgresEventStore.snapshot_store()`; `close()` leaves the
    shared pool to the event store.
    """

    def __init__(
        self,
        pool: Any,
        *,
        schema: str = "public",
        table_prefix: str = "sekiban",
        where: str = "PostgreSQL",
    ) -> None:
        self._pool = pool
        self._where = where
        t = Tables(schema, table_prefix)
        self.snapshots_table = t.snapshots
        """The quoted, schema-qualified table name."""
        key = f"{STREAM} AND projector_name = $4"
        self._get_sql = f"SELECT {SNAPSHOT_COLUMNS} FROM {t.snapshots} WHERE {key}"
        self._delete_sql = f"DELETE FROM {t.snapshots} WHERE {key}"
        # An equal version replaces (same as the protocol and the in-memory store); only
        # a strictly newer stored snapshot wins.
        self._save_sql = f"""
INSERT INTO {t.snapshots} AS s (root_partition_key, aggregate_group, aggregate_id,
    projector_name, version, last_sortable_unique_id, payload, projector_version,
    payload_type, format_version, encoding, checksum, taken_at, events_since_previous,
    signature)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (root_partition_key, aggregate_group, aggregate_id, projector_name) DO UPDATE SET
    version = EXCLUDED.version,
    last_sortable_unique_id = EXCLUDED.last_sortable_unique_id,
    payload = EXCLUDED.payload,
    projector_version = EXCLUDED.projector_version,
    payload_type = EXCLUDED.payload_type,
    format_version = EXCLUDED.format_version,
    encoding = EXCLUDED.encoding,
    checksum = EXCLUDED.checksum,
    taken_at = EXCLUDED.taken_at,
    events_since_previous = EXCLUDED.events_since_previous,
    signature = EXCLUDED.signature
WHERE s.version <= EXCLUDED.version
RETURNING true"""

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        with translate_faults(self._where):
            row = await self._pool.fetchrow(
                self._get_sql, *stream_key(partition_keys), projector_name
            )
        if row is None:
            return None
        return snapshot_from_columns(partition_keys, projector_name, row)

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        with translate_faults(self._where, writing=True):
            written = await self._pool.fetchval(
                self._save_sql,
                *stream_key(snapshot.partition_keys),
                snapshot.metadata.projector_name,
                *snapshot_columns(snapshot),
            )
        return written is True

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        with translate_faults(self._where, writing=True):
            await self._pool.execute(self._delete_sql, *stream_key(partition_keys), projector_name)

    async def close(self) -> None:
        return None
