"""The columns SQL snapshot stores keep for a snapshot, and the snapshot back from them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import SnapshotRejectedError
from sekiban.snapshot.types import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotEncoding,
    SnapshotMetadata,
    SnapshotRejection,
)

# A dict lookup: calling the enum class costs more than the rest of the row.
_ENCODINGS = {encoding.value: encoding for encoding in SnapshotEncoding}

SNAPSHOT_COLUMNS = (
    "version, last_sortable_unique_id, payload, projector_version, payload_type, "
    "format_version, encoding, checksum, taken_at, events_since_previous, signature"
)


# The schema fingerprint rides in the projector_version column after this separator,
# so existing tables need no new column; rows without it have none.
_FINGERPRINT_SEPARATOR = "#schema="


def snapshot_columns(
    snapshot: AggregateSnapshot, *, text_timestamp: bool = False
) -> tuple[Any, ...]:
    """The values of `SNAPSHOT_COLUMNS`, in order (`taken_at` as ISO text if asked)."""
    m = snapshot.metadata
    return (
        snapshot.version,
        snapshot.last_sortable_unique_id,
        snapshot.payload,
        (
            f"{m.projector_version}{_FINGERPRINT_SEPARATOR}{m.schema_fingerprint}"
            if m.schema_fingerprint
            else m.projector_version
        ),
        m.payload_type,
        m.format_version,
        m.encoding.value,
        m.checksum,
        m.taken_at.isoformat() if text_timestamp else m.taken_at,
        m.events_since_previous,
        m.signature,
    )


def snapshot_from_columns(
    partition_keys: PartitionKeys, projector_name: str, row: Sequence[Any]
) -> AggregateSnapshot:
    """The snapshot a row of `SNAPSHOT_COLUMNS` holds; a row that cannot be one raises
    `SnapshotRejectedError` (corrupt), so the aggregate is replayed instead."""
    try:
        if not isinstance(row[0], int):
            raise TypeError(f"version {row[0]!r} is not an integer")
        if not isinstance(row[3], str):
            raise TypeError(f"projector version {row[3]!r} is not text")
        if row[10] is not None and not isinstance(row[10], str):
            raise TypeError(f"signature {row[10]!r} is not text")
        taken_at = row[8] if isinstance(row[8], datetime) else datetime.fromisoformat(row[8])
        projector_version, _, fingerprint = row[3].partition(_FINGERPRINT_SEPARATOR)
        return AggregateSnapshot(
            partition_keys,
            row[0],
            row[1],
            bytes(row[2]),
            SnapshotMetadata(
                projector_name,
                projector_version,
                row[4],
                row[5],
                _ENCODINGS[row[6]],
                row[7],
                taken_at,
                row[9],
                row[10],
                fingerprint,
            ),
        )
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise SnapshotRejectedError(
            SnapshotRejection(
                RejectionReason.CORRUPT,
                f"snapshot row of {partition_keys} / {projector_name} is unreadable: {error}",
            )
        ) from None
