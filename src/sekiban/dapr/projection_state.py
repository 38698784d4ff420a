"""A projector actor's projection store and blob store, both in its Dapr actor state.

The `ProjectionRecord` is one JSON document of the columns every projection store keeps
(`sekiban.stores.projection_rows`), read back through the same checks. A state too
large to sit in it (over half the record's limit, encoded: base64 grows it by a third)
is kept out of line, as `Projections` keeps any large state in a `BlobStore`: in chunks
under keys of their own, each saved in its own request (daprd refuses bodies over its
`--max-body-size`), the chunk count written last, and only then the record naming them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from contextlib import suppress
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from dapr.actor import Actor

from sekiban.errors import SnapshotRejectedError, StoreError
from sekiban.projections import ProjectionRecord
from sekiban.projections.encoding import DEFAULT_SPILL_BYTES
from sekiban.snapshot.types import RejectionReason, SnapshotRejection
from sekiban.stores.projection_rows import (
    PROJECTION_COLUMNS,
    check_storable,
    projection_from_columns,
    reject,
)

PROJECTION_STATE_KEY = "projection"
DEFAULT_MAX_ACTOR_STATE_BYTES = 3 * 1024 * 1024
"""The largest value (JSON) a projector actor writes to one actor state key in one
request: the record, or a chunk of a large state. daprd refuses request bodies over its
`--max-body-size` (4 MiB by default)."""

BLOB_CHUNK_BYTES = 1024 * 1024
"""State bytes per chunk key at most (1.4 MB as base64 JSON), one save request each."""

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
                    f"{self.max_bytes}, which leaves no room for the record itself; it is "
                    "kept in memory only. Raise create_actor_app(max_projection_state_bytes="
                    "...), keeping it under daprd's --max-body-size",
                )
            )
        stored = None
        with suppress(SnapshotRejectedError):  # a corrupt record is replaced
            stored = await self.get(record.name)
        if not record.replaces(stored):
            return False
        await save_actor_state(self._actor, {PROJECTION_STATE_KEY: document})
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


class ActorStateBlobStore:
    """Large projection states in the actor's own state (a `BlobStore`): blob `key` is
    the JSON count of its chunks under `blob:<key>`, written after the chunks
    `blob:<key>:0`, `blob:<key>:1`, ... (base64), each saved in its own request.

    `Projections` names a blob in the record only after `put` returned, and deletes the
    one the previous record named only after the new record is saved, so a crash leaves
    the previous record and its blob whole (at worst some unnamed chunks behind).
    """

    def __init__(self, actor: Actor, max_bytes: int = DEFAULT_MAX_ACTOR_STATE_BYTES) -> None:
        self._actor = actor
        self.chunk_bytes = max(min(BLOB_CHUNK_BYTES, inline_limit(max_bytes)), 1)

    async def put(self, key: str, chunks: Iterable[bytes]) -> None:
        head = _blob_state_key(key)
        count = 0
        for piece in _rechunk(chunks, self.chunk_bytes):
            data = json.dumps(base64.b64encode(piece).decode()).encode()
            await save_actor_state(self._actor, {f"{head}:{count}": data})
            count += 1
        await save_actor_state(self._actor, {head: json.dumps({"chunks": count}).encode()})

    async def open(self, key: str) -> IO[bytes] | None:
        head = _blob_state_key(key)
        count = await self._count(head)
        if count is None:
            return None
        file: IO[bytes] = SpooledTemporaryFile(max_size=DEFAULT_SPILL_BYTES)  # noqa: SIM115
        try:
            for index in range(count):
                data = await self._read(f"{head}:{index}")
                if data is None:
                    file.close()
                    return None
                file.write(_chunk_bytes(key, data))
        except BaseException:
            file.close()
            raise
        file.seek(0)
        return file

    async def delete(self, key: str) -> None:
        head = _blob_state_key(key)
        count = await self._count(head)
        state = self._actor._state_manager
        for index in range(count or 0):
            await state.try_remove_state(f"{head}:{index}")
        await state.try_remove_state(head)
        await state.save_state()  # deletes only: a small request, whatever the blob's size

    async def _count(self, head: str) -> int | None:
        data = await self._read(head)
        if data is None:
            return None
        try:
            count = json.loads(data)["chunks"]
            if type(count) is not int or count < 0:
                raise ValueError(f"chunk count {count!r:.40}")
        except (ValueError, TypeError, KeyError, RecursionError) as error:
            reject(RejectionReason.CORRUPT, f"blob {head!r} is unreadable: {error}")
        return count

    async def _read(self, name: str) -> bytes | None:
        state = self._actor._state_manager
        found, data = await state.try_get_state(name)
        # The SDK caches what it read: drop it, chunks are not read twice. Nothing is
        # pending here (every write is saved at once).
        await state.clear_cache()
        return bytes(data) if found and data else None


def inline_limit(max_bytes: int) -> int:
    """The encoded state bytes a value of `max_bytes` holds with room to spare (base64
    adds a third, the record's fields a few hundred bytes)."""
    return max_bytes // 2


async def save_actor_state(actor: Actor, values: dict[str, bytes]) -> None:
    """Set `values` in `actor`'s state and save them now, in one request; any failure
    is a `StoreError` (the write may have happened). The SDK's cache of them is dropped
    either way: a failed write must not be retried by its end-of-call save, and a saved
    chunk need not stay in memory."""
    state = actor._state_manager
    try:
        for name, value in values.items():
            await state.set_state(name, value)
        await state.save_state()
    except Exception as error:
        raise StoreError(
            f"actor state {', '.join(values)} of {actor.id} not saved: {error}",
            outcome_unknown=True,
        ) from error
    finally:
        await state.clear_cache()


def _blob_state_key(key: str) -> str:
    # A state key is a path segment of daprd's state API: no "/" in it.
    return "blob:" + key.replace("/", ":")


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """`chunks` as pieces of `size` bytes (the last one shorter; none for no bytes)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending:
        yield pending


def _chunk_bytes(key: str, data: bytes) -> bytes:
    try:
        text = json.loads(data)
        if not isinstance(text, str):
            raise TypeError("a chunk is a base64 string")
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError, RecursionError, binascii.Error) as error:
        reject(RejectionReason.CORRUPT, f"a chunk of blob {key!r} is unreadable: {error}")
