"""The columns projection stores keep for a `ProjectionRecord`, the record back from
them (checked before writing too: a store never accepts a record it would then call
corrupt), and the upsert that applies `ProjectionRecord.replaces` in the write itself.

Shared by the SQLite, PostgreSQL and Cosmos DB projection stores (Cosmos DB turns its
document into these columns first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from sekiban.errors import ConfigurationError, SnapshotRejectedError
from sekiban.projections.store import ProjectionRecord
from sekiban.snapshot.types import RejectionReason, SnapshotRejection

PROJECTION_COLUMNS = (
    "name",
    "projector_version",
    "schema_fingerprint",
    "position",
    "events_applied",
    "taken_at",
    "encoding",
    "size",
    "sha256",
    "payload",
    "blob_key",
    "signature",
)
COLUMN_LIST = ", ".join(PROJECTION_COLUMNS)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BYTES = (bytes, bytearray, memoryview)
SQL_POSITIONS = 2**63
"""SQL projection stores keep positions below this (64-bit integer columns)."""


def projection_columns(
    record: ProjectionRecord, *, text_timestamp: bool = False
) -> tuple[Any, ...]:
    """The values of `PROJECTION_COLUMNS`, in order (`taken_at` as ISO text if asked),
    for a record `check_storable` accepts with the SQL stores' position limit."""
    check_storable(record, positions_below=SQL_POSITIONS)
    return _values(record, text_timestamp)


def check_storable(record: ProjectionRecord, *, positions_below: int) -> None:
    """Refuse, before anything is written, a record whose position the store cannot
    hold (a Cosmos DB position in a SQL store) or that its reader would reject as
    corrupt (the reader's own checks): `ConfigurationError`."""
    if record.position >= positions_below:
        raise ConfigurationError(
            f"position {record.position} of projection {record.name!r} does not fit this "
            "projection store: use the projection store of the event store it comes from"
        )
    try:
        projection_from_columns(record.name, _values(record, text_timestamp=False))
    except SnapshotRejectedError as error:
        raise ConfigurationError(
            f"projection record {record.name!r} cannot be stored: {error.rejection.detail}"
        ) from None


def _values(record: ProjectionRecord, text_timestamp: bool) -> tuple[Any, ...]:
    return (
        record.name,
        record.projector_version,
        record.schema_fingerprint,
        record.position,
        record.events_applied,
        record.taken_at.isoformat() if text_timestamp else record.taken_at,
        record.encoding,
        record.size,
        record.sha256,
        record.payload,
        record.blob_key,
        record.signature,
    )


def upsert_sql(table: str, placeholders: Sequence[str], *, also_replace: str = "") -> str:
    """INSERT of one row of `PROJECTION_COLUMNS` that updates the stored row only where
    the new one `replaces` it (SQLite and PostgreSQL: `table` is quoted and validated).

    The condition is checked on the row as the write finds it (SQLite writes one at a
    time; PostgreSQL locks the conflicting row and re-reads it), so two writers can
    never leave the lower position stored. `also_replace` is an extra SQL condition
    under which the stored row is replaced (a store's test for an unreadable one).
    """
    assignments = ", ".join(f"{c} = excluded.{c}" for c in PROJECTION_COLUMNS[1:])
    replaces = (
        "p.projector_version <> excluded.projector_version "
        "OR p.schema_fingerprint <> excluded.schema_fingerprint "
        "OR p.position <= excluded.position"
    )
    if also_replace:
        replaces = f"{replaces} OR {also_replace}"
    return (
        f"INSERT INTO {table} AS p ({COLUMN_LIST}) VALUES ({', '.join(placeholders)}) "
        f"ON CONFLICT (name) DO UPDATE SET {assignments} WHERE {replaces}"
    )


def projection_from_columns(name: str, row: Sequence[Any]) -> ProjectionRecord:
    """The record a row of `PROJECTION_COLUMNS` holds; a row that cannot be one raises
    `SnapshotRejectedError` (corrupt), so the projection is rebuilt instead."""
    try:
        if row[0] != name:
            raise ValueError(f"the row is named {row[0]!r}")
        taken_at = row[5] if isinstance(row[5], datetime) else datetime.fromisoformat(row[5])
        payload = None if row[9] is None else bytes(_typed(row[9], _BYTES, "payload"))
        blob_key = _optional_text(row[10], "blob_key")
        if (payload is None) == (blob_key is None):
            raise ValueError("a record has either a payload or a blob key")
        sha256 = _typed(row[8], str, "sha256")
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"sha256 {sha256!r} is not a hex SHA-256 digest")
        return ProjectionRecord(
            name=name,
            projector_version=_typed(row[1], str, "projector_version"),
            schema_fingerprint=_typed(row[2], str, "schema_fingerprint"),
            position=_count(row[3], "position"),
            events_applied=_count(row[4], "events_applied"),
            taken_at=taken_at,
            encoding=_typed(row[6], str, "encoding"),
            size=_count(row[7], "size"),
            sha256=sha256,
            payload=payload,
            blob_key=blob_key,
            signature=_optional_text(row[11], "signature"),
        )
    except (ValueError, TypeError, IndexError) as error:
        reject(RejectionReason.CORRUPT, f"projection row of {name!r} is unreadable: {error}")


def reject(reason: RejectionReason, detail: str) -> NoReturn:
    """Raise `SnapshotRejectedError` for `reason`: the projection is rebuilt."""
    raise SnapshotRejectedError(SnapshotRejection(reason, detail)) from None


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{what} {value!r:.80} has type {type(value).__name__}")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    return None if value is None else _typed(value, str, what)


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:  # bool is an int, and no count
        raise ValueError(f"{what} {value!r:.80} is not a count")
    return value
