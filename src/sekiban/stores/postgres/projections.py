"""The PostgreSQL projection store: each multi-projection's persisted state, one row in
`<table_prefix>_projections` beside the event store's tables."""

from __future__ import annotations

from typing import Any

from sekiban.projections.store import ProjectionRecord
from sekiban.stores.postgres.faults import translate_faults
from sekiban.stores.postgres.schema import Tables
from sekiban.stores.projection_rows import (
    COLUMN_LIST,
    PROJECTION_COLUMNS,
    projection_columns,
    projection_from_columns,
    upsert_sql,
)
from sekiban.stores.protocols import ClosesOnExit


class PostgresProjectionStore(ClosesOnExit):
    """Projection records in the event store's schema, sharing its pool.

    Obtained from `PostgresEventStore.projection_store()`; `close()` leaves the pool to
    the event store. `save` is one upsert whose condition is `ProjectionRecord.replaces`,
    evaluated on the conflicting row under its lock, so racing saves keep the newer state.
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
        self.table = Tables(schema, table_prefix).projections
        """The quoted, schema-qualified table name."""
        self._get_sql = f"SELECT {COLUMN_LIST} FROM {self.table} WHERE name = $1"
        placeholders = [f"${i}" for i in range(1, len(PROJECTION_COLUMNS) + 1)]
        self._save_sql = f"{upsert_sql(self.table, placeholders)} RETURNING true"

    async def get(self, name: str) -> ProjectionRecord | None:
        with translate_faults(self._where):
            row = await self._pool.fetchrow(self._get_sql, name)
        return None if row is None else projection_from_columns(name, row)

    async def save(self, record: ProjectionRecord) -> bool:
        with translate_faults(self._where, writing=True):
            written = await self._pool.fetchval(self._save_sql, *projection_columns(record))
        return written is True

    async def delete(self, name: str) -> None:
        with translate_faults(self._where, writing=True):
            await self._pool.execute(f"DELETE FROM {self.table} WHERE name = $1", name)

    async def names(self) -> list[str]:
        with translate_faults(self._where):
            rows = await self._pool.fetch(f"SELECT name FROM {self.table}")
        return sorted(row[0] for row in rows)
