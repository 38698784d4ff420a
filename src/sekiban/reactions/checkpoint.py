"""A subscriber's checkpoint: its position, counts, parked items and state, as one
JSON record `reaction:<name>` in a projection store."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sekiban.projections.store import ProjectionRecord

RECORD_PREFIX = "reaction:"
RECORD_ENCODING = "reaction-checkpoint+json"


def checkpoint_record(
    name: str, position: int, body: dict[str, Any], now: datetime
) -> ProjectionRecord:
    """`body` (position, handled, parked, state) as the projection-store record of the
    subscriber `name`."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    return ProjectionRecord(
        name=RECORD_PREFIX + name,
        projector_version="reaction",
        schema_fingerprint="",
        position=position,
        events_applied=int(body.get("handled", 0)),
        taken_at=now,
        encoding=RECORD_ENCODING,
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        payload=payload,
    )


def read_checkpoint(record: ProjectionRecord) -> dict[str, Any]:
    """The JSON body of a reaction checkpoint record."""
    assert record.payload is not None
    data: dict[str, Any] = json.loads(record.payload)
    return data
