"""Where multi-projection states are persisted: the `ProjectionStore` protocol, the
record it keeps, and the in-memory store.

A record is a cache of the events, like a snapshot: a state at a global position,
written by one projector version under one set of event schemas. A record that is
missing, corrupt, unsigned (when signing is on) or of another version is not used;
the projection is rebuilt from the events.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sekiban.errors import SnapshotRejectedError
from sekiban.snapshot.types import RejectionReason, SnapshotRejection
from sekiban.stores.protocols import ClosesOnExit

_TEXT_FIELDS = ("name", "projector_version", "schema_fingerprint", "encoding", "sha256")
_INT_FIELDS = ("position", "events_applied", "size")
_OPTIONAL_TEXT_FIELDS = ("blob_key", "signature")


@dataclass(frozen=True, slots=True)
class ProjectionRecord:
    """One multi-projection's persisted state and where in the event order it stands.

    The state's bytes (see `sekiban.projections.encoding`) are either in `payload`, or
    out of line in a blob store under `blob_key`; `size` and `sha256` describe them
    either way.
    """

    name: str
    projector_version: str
    schema_fingerprint: str
    position: int
    events_applied: int
    taken_at: datetime
    encoding: str
    size: int
    sha256: str
    payload: bytes | None = None
    blob_key: str | None = None
    signature: str | None = None

    def canonical_form(self) -> bytes:
        """What a signature covers: everything that decides the restored state (the
        digest stands for the bytes, wherever they are)."""
        return json.dumps(
            [
                "sekiban-projection",
                self.name,
                self.projector_version,
                self.schema_fingerprint,
                self.position,
                self.encoding,
                self.size,
                self.sha256,
                self.blob_key,
            ],
            separators=(",", ":"),
        ).encode()

    def to_json(self) -> bytes:
        """The record as one JSON document (the state's bytes in base64), for stores
        that keep documents, such as Dapr actor state."""
        document: dict[str, Any] = {
            "format": "sekiban-projection-record/1",
            **{name: getattr(self, name) for name in _TEXT_FIELDS + _INT_FIELDS},
            **{name: getattr(self, name) for name in _OPTIONAL_TEXT_FIELDS},
            "taken_at": self.taken_at.isoformat(),
            "payload": None if self.payload is None else base64.b64encode(self.payload).decode(),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ProjectionRecord:
        """Parse `to_json` output; anything malformed raises `SnapshotRejectedError`
        (corrupt)."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict) or d.get("format") != "sekiban-projection-record/1":
                raise ValueError("not a sekiban projection record")
            fields: dict[str, Any] = {name: _typed(d[name], str) for name in _TEXT_FIELDS}
            fields |= {name: _typed(d[name], int) for name in _INT_FIELDS}
            fields |= {name: _typed(d.get(name), str, None) for name in _OPTIONAL_TEXT_FIELDS}
            payload = _typed(d.get("payload"), str, None)
            return cls(
                **fields,
                taken_at=datetime.fromisoformat(_typed(d["taken_at"], str)),
                payload=None if payload is None else base64.b64decode(payload, validate=True),
            )
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            raise SnapshotRejectedError(
                SnapshotRejection(RejectionReason.CORRUPT, f"unreadable projection record: {error}")
            ) from None

    def replaces(self, stored: ProjectionRecord | None) -> bool:
        """Whether saving this record over `stored` keeps the newer state: always over
        nothing or another projector version or schema, else when not behind it."""
        return (
            stored is None
            or (stored.projector_version, stored.schema_fingerprint)
            != (self.projector_version, self.schema_fingerprint)
            or stored.position <= self.position
        )


def _typed(value: Any, kind: type, *none: None) -> Any:
    """`value` if it is a `kind` (a bool is no int), or None when `none` allows it."""
    if (value is None and none) or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected {kind.__name__}, got {value!r}")


class ProjectionStore(Protocol):
    """The latest persisted state of each multi-projection, by projector name."""

    async def get(self, name: str) -> ProjectionRecord | None:
        """The stored record, or None. A stored row that cannot be parsed raises
        `SnapshotRejectedError` (corrupt)."""
        ...

    async def save(self, record: ProjectionRecord) -> bool:
        """Store `record` if it `replaces` the stored one, atomically with that check.

        Returns True when `record` is now the stored one.
        """
        ...

    async def delete(self, name: str) -> None:
        """Forget the projection's record (the next start rebuilds it)."""
        ...

    async def names(self) -> list[str]:
        """The names of every stored projection, sorted."""
        ...

    async def close(self) -> None: ...


class InMemoryProjectionStore(ClosesOnExit):
    """Projection records in process memory (the encoded bytes, never live objects, so
    a restore goes through the codec as it would from a database)."""

    def __init__(self) -> None:
        self._records: dict[str, ProjectionRecord] = {}

    async def get(self, name: str) -> ProjectionRecord | None:
        return self._records.get(name)

    async def save(self, record: ProjectionRecord) -> bool:
        if not record.replaces(self._records.get(record.name)):
            return False
        self._records[record.name] = record
        return True

    async def delete(self, name: str) -> None:
        self._records.pop(name, None)

    async def names(self) -> list[str]:
        return sorted(self._records)
