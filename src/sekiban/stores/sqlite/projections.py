"""The SQLite projection store: each multi-projection's persisted state, one row in
the event store's database (table `projections`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from sekiban.projections.store import ProjectionRecord
from sekiban.stores.projection_rows import (
    COLUMN_LIST,
    PROJECTION_COLUMNS,
    projection_columns,
    projection_from_columns,
    upsert_sql,
)
from sekiban.stores.protocols import ClosesOnExit
from sekiban.stores.sqlite.database import Database
from sekiban.stores.sqlite.faults import translate_faults

# A position that is not an integer (a row written by hand) is not a state to keep.
_UPSERT = upsert_sql(
    "projections",
    ["?"] * len(PROJECTION_COLUMNS),
    also_replace="typeof(p.position) <> 'integer'",
)


class SqliteProjectionStore(ClosesOnExit):
    """Projection records in the event store's database, sharing its connection.

    Obtained from `SqliteEventStore.projection_store()`; `close()` leaves the database
    to the event store. `save` is one upsert whose condition is `ProjectionRecord.replaces`.
    """

    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, name: str) -> ProjectionRecord | None:
        with translate_faults(self._db.where):
            row = await self._db.run(_fetch, name)
        return None if row is None else projection_from_columns(name, row)

    async def save(self, record: ProjectionRecord) -> bool:
        row = projection_columns(record, text_timestamp=True)
        with translate_faults(self._db.where, writing=True):
            return await self._db.run(_upsert, row)

    async def delete(self, name: str) -> None:
        with translate_faults(self._db.where, writing=True):
            await self._db.run(_delete, name)

    async def names(self) -> list[str]:
        with translate_faults(self._db.where):
            rows = await self._db.run(_names)
        return sorted(row[0] for row in rows)


def _fetch(connection: sqlite3.Connection, name: str) -> Any:
    return connection.execute(
        f"SELECT {COLUMN_LIST} FROM projections WHERE name = ?", (name,)
    ).fetchone()


def _upsert(connection: sqlite3.Connection, row: tuple[Any, ...]) -> bool:
    return connection.execute(_UPSERT, row).rowcount == 1


def _delete(connection: sqlite3.Connection, name: str) -> None:
    connection.execute("DELETE FROM projections WHERE name = ?", (name,))


def _names(connection: sqlite3.Connection) -> list[Any]:
    return connection.execute("SELECT name FROM projections").fetchall()
