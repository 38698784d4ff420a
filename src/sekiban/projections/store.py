"""Where multi-projection states are persisted: the `ProjectionStore` protocol, the
record it keeps, and the in-memory store.

A record is a cache of the events, like a snapshot: a state at a global position,
written by one projector version under one set of event schemas. A record that is
missing, corrupt, unsigned (when signing is on) or of another version is not used;
the projection is rebuilt from the events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sekiban.stores.protocols import ClosesOnExit


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

    def replaces(self, stored: ProjectionRecord | None) -> bool:
        """Whether saving this record over `stored` keeps the newer state: always over
        nothing or another projector version or schema, else when not behind it."""
        return (
            stored is None
            or (stored.projector_version, stored.schema_fingerprint)
            != (self.projector_version, self.schema_fingerprint)
            or stored.position <= self.position
        )


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
