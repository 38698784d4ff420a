"""A projector actor's projection store: one `ProjectionRecord` in the actor's Dapr actor
state, as a JSON document of the columns every projection store keeps
(`sekiban.stores.projection_rows`), read back through the same checks."""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import suppress
from typing import Any

from dapr.actor import Actor

from sekiban.errors import SnapshotRejectedError, StoreError
from sekiban.projections import ProjectionRecord
from sekiban.snapshot.types import RejectionReason, SnapshotRejection
from sekiban.stores.projection_rows import (
    PROJECTION_COLUMNS,
    check_storable,
    projection_from_columns,
    reject,
)

PROJECTION_STATE_KEY = "projection"
DEFAULT_MAX_ACTOR_STATE_BYTES = 3 * 1024 * 1024
"""The largest projection record (JSON, the state base64-encoded inside) written to
actor state. daprd refuses request bodies over its `--max-body-size` (4 MiB by
default), and the SDK saves actor state in one request: raise both together."""

DOCUMENT_FORMAT = "sekiban-projection-record/1"
_POSITION_DIGITS = 64
"""Positions are written as decimal text (exact in any state store's JSON, whatever
the event store's positions are); this many digits at most."""


def record_document(record: ProjectionRecord) -> bytes:
    """`record` as the JSON document kept in actor state: the projection stores'
    columns, the position as text, the state's bytes in base64. A record the reader
    would refuse raises `ConfigurationError` before anything is written."""
    check_storable(record, positions_below=10**_POSITION_DIGITS)
    document: dict[str, Any] = {"format": DOCUMENT_FORMAT}
    document |= {column: getattr(record, column) for column in PROJECTION_COLUMNS}
    document["position"] = str(record.position)
    document["taken_at"] = record.taken_at.isoformat()
    if record.payload is not None:
        document["payload"] = base64.b64encode(record.payload).decode()
    return json.dumps(document, separators=(",", ":")).encode()


def record_from_document(name: str, data: bytes | str) -> ProjectionRecord:
    """The record `record_document` wrote for projection `name`; anything else (not
    JSON, another format, another projection, a field out of shape) raises
    `SnapshotRejectedError` (corrupt)."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != DOCUMENT_FORMAT:
            raise ValueError(f"not a {DOCUMENT_FORMAT} document")
        row = [document[column] for column in PROJECTION_COLUMNS]
        position, payload = document["position"], document["payload"]
        if not (
            isinstance(position, str)
            and position.isascii()
            and position.isdecimal()
            and len(position) <= _POSITION_DIGITS
        ):
            raise ValueError(f"position {position!r:.80} is not decimal text")
        row[PROJECTION_COLUMNS.index("position")] = int(position)
        if payload is not None:
            row[PROJECTION_COLUMNS.index("payload")] = base64.b64decode(payload, validate=True)
    except (ValueError, TypeError, KeyError, RecursionError, binascii.Error) as error:
        reject(RejectionReason.CORRUPT, f"projection record of {name!r} is unreadable: {error}")
    return projection_from_columns(name, row)


class ActorStateProjectionStore:
    """The projection store of one projector actor: one record (`record_document`) under
    the key "projection" of its actor state, saved at once.

    A record over `max_bytes` is not written: `save` raises `SnapshotRejectedError`
    (too large), which `Projections` logs and counts, and the projection goes on in
    memory (after a failover it is rebuilt from the events).
    """

    def __init__(self, actor: Actor, max_bytes: int = DEFAULT_MAX_ACTOR_STATE_BYTES) -> None:
        self._actor = actor
        self.max_bytes = max_bytes

    async def get(self, name: str) -> ProjectionRecord | None:
        found, data = await self._actor._state_manager.try_get_state(PROJECTION_STATE_KEY)
        return record_from_document(name, data) if found and data else None

    async def save(self, record: ProjectionRecord) -> bool:
        document = record_document(record)
        if len(document) > self.max_bytes:
            raise SnapshotRejectedError(
                SnapshotRejection(
                    RejectionReason.TOO_LARGE,
                    f"projection {record.name!r} at position {record.position} is "
                    f"{len(document)} bytes as actor state, over the limit of "
                    f"{self.max_bytes}; it is kept in memory only. Raise "
                    "create_actor_app(max_projection_state_bytes=...) together with daprd's "
                    "--max-body-size, or keep this projection in process",
                )
            )
        stored = None
        with suppress(SnapshotRejectedError):  # a corrupt record is replaced
            stored = await self.get(record.name)
        if not record.replaces(stored):
            return False
        state = self._actor._state_manager
        try:
            await state.set_state(PROJECTION_STATE_KEY, document)
            await state.save_state()
        except Exception as error:
            # Nothing of it may be saved later by the SDK's end-of-call save.
            await state.clear_cache()
            raise StoreError(
                f"actor state of projection {record.name!r} not saved: {error}",
                outcome_unknown=True,
            ) from error
        return True

    async def delete(self, name: str) -> None:
        await self._actor._state_manager.try_remove_state(PROJECTION_STATE_KEY)
        await self._actor._state_manager.save_state()

    async def names(self) -> list[str]:
        found, data = await self._actor._state_manager.try_get_state(PROJECTION_STATE_KEY)
        if not (found and data):
            return []
        with suppress(ValueError, TypeError, RecursionError):
            document = json.loads(data)
            if isinstance(document, dict) and isinstance(document.get("name"), str):
                return [document["name"]]
        return []

    async def close(self) -> None:
        return None
