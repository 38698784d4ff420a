"""The SQLite snapshot store: the latest snapshot per (aggregate, projector), in the
event store's database."""

from __future__ import annotations

import sqlite3
from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.snapshot.types import AggregateSnapshot
from sekiban.stores.protocols import ClosesOnExit
from sekiban.stores.snapshot_rows import (
    SNAPSHOT_COLUMNS,
    snapshot_columns,
    snapshot_from_columns,
)
from sekiban.stores.sqlite.database import Database
from sekiban.stores.sqlite.faults import translate_faults
from sekiban.stores.sqlite.schema import STREAM, stream_key


class SqliteSnapshotStore(ClosesOnExit):
    """The latest snapshot per (aggregate, projector) in the event store's database."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        with translate_faults(self._db.where):
            row = await self._db.run(_fetch_snapshot, stream_key(partition_keys), projector_name)
        if row is None:
            return None
        return snapshot_from_columns(partition_keys, projector_name, row)

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        row = (
            *stream_key(snapshot.partition_keys),
            snapshot.metadata.projector_name,
            *snapshot_columns(snapshot, text_timestamp=True),
        )

        def upsert(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET version = excluded.version, "
                "last_sortable_unique_id = excluded.last_sortable_unique_id, "
                "payload = excluded.payload, projector_version = excluded.projector_version, "
                "payload_type = excluded.payload_type, format_version = excluded.format_version, "
                "encoding = excluded.encoding, checksum = excluded.checksum, "
                "taken_at = excluded.taken_at, "
                "events_since_previous = excluded.events_since_previous, "
                "signature = excluded.signature "
                "WHERE snapshots.version <= excluded.version",
                row,
            )
            return cursor.rowcount == 1

        with translate_faults(self._db.where, writing=True):
            return await self._db.run(upsert)

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        def delete(connection: sqlite3.Connection) -> None:
            connection.execute(
                f"DELETE FROM snapshots WHERE {STREAM} AND projector_name = ?",
                (*stream_key(partition_keys), projector_name),
            )

        with translate_faults(self._db.where, writing=True):
            await self._db.run(delete)

    async def close(self) -> None:
        return None


def _fetch_snapshot(
    connection: sqlite3.Connection, stream: tuple[str, str, str], projector_name: str
) -> Any:
    return connection.execute(
        f"SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE {STREAM} AND projector_name = ?",
        (*stream, projector_name),
    ).fetchone()
