"""The Cosmos DB projection store: each multi-projection's persisted state as a head
document, with its bytes inline or in chunk documents written before it (see the
package docstring for why in that order)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
from contextlib import suppress
from typing import Any

from sekiban._extras import require_extra
from sekiban.errors import ConfigurationError, SnapshotRejectedError
from sekiban.projections.store import ProjectionRecord
from sekiban.snapshot.types import RejectionReason
from sekiban.stores.projection_rows import check_storable, projection_from_columns, reject
from sekiban.stores.protocols import ClosesOnExit

with require_extra("cosmos", "sekiban.stores.cosmos"):
    from azure.cosmos.exceptions import CosmosHttpResponseError, CosmosResourceNotFoundError

    from sekiban.stores.cosmos.commits import query_pages
    from sekiban.stores.cosmos.connection import translate_errors
    from sekiban.stores.cosmos.snapshots import (
        read_document,
        snapshot_id,
        write_unless_changed,
    )

log = logging.getLogger("sekiban.stores.cosmos")

CHUNK_BYTES = 1_100_000
"""Stored bytes per document: about 1.47 MB once in base64, under Cosmos DB's 2 MB item
limit with room for the head's other fields. A larger state goes into chunks."""
POSITION_DIGITS = 40
"""Positions are kept as zero-padded decimal text (Cosmos DB positions pass 2**63, and
JSON numbers lose precision past 2**53), so text order is numeric order."""
HEAD, CHUNK = "head", "chunk"
_WINDOW = 8  # chunk documents read or written at once
_READ_ATTEMPTS = 3  # heads read when each one's chunks were replaced while being read
# `c.pk = @pk` although partition_key= is passed: the local server ignores it on queries.
_PARTITION_IDS = "SELECT VALUE c.id FROM c WHERE c.pk = @pk"
_NAMES = f"SELECT VALUE c.pk FROM c WHERE c.kind = '{HEAD}'"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_POSITION = re.compile(rf"[0-9]{{{POSITION_DIGITS}}}")


class CosmosProjectionStore(ClosesOnExit):
    """Projection records in the `<container_prefix>-projections` container, one logical
    partition per projection (the partition key is its name).

    Obtained from `CosmosEventStore.projection_store()`; `close()` leaves the shared
    client to the event store. `save` reads the head, decides with
    `ProjectionRecord.replaces`, and writes guarded by the head's ETag; a lost race
    (409 on create, 412 on replace) reads again and decides again. A head whose chunks
    are gone raises `SnapshotRejectedError` (missing), an unreadable one (corrupt).
    """

    def __init__(self, container: Any, *, endpoint: str, chunk_bytes: int = CHUNK_BYTES) -> None:
        if chunk_bytes < 1:
            raise ConfigurationError(f"chunk_bytes must be positive, got {chunk_bytes}")
        self._container = container
        self._endpoint = endpoint
        self._chunk_bytes = chunk_bytes

    async def get(self, name: str) -> ProjectionRecord | None:
        with translate_errors(self._endpoint):
            for attempt in range(_READ_ATTEMPTS):
                head = await read_document(self._container, snapshot_id(name), name)
                if head is None:
                    return None
                record, chunks = head_record(name, head)
                if not chunks:
                    return record
                try:
                    payload = await self._read_chunks(record, chunks)
                    break
                except SnapshotRejectedError as error:
                    # A save that moved the head on deletes the chunks this one named:
                    # read the new head rather than rebuild the projection.
                    if error.rejection.reason is not RejectionReason.MISSING:
                        raise
                    now = await read_document(self._container, snapshot_id(name), name)
                    moved = now is None or now.get("_etag") != head.get("_etag")
                    if not moved or attempt == _READ_ATTEMPTS - 1:
                        raise
                    if now is None:
                        return None
        if len(payload) != record.size:
            reject(
                RejectionReason.CORRUPT,
                f"the {chunks} chunks of projection {name!r} hold {len(payload)} bytes, "
                f"its head says {record.size}",
            )
        return dataclasses.replace(record, payload=payload)

    async def _read_chunks(self, record: ProjectionRecord, count: int) -> bytes:
        """The bytes of the chunks, read a few at a time (a damaged count stops at the
        first window that finds a chunk missing)."""

        async def chunk(index: int) -> bytes:
            chunk_id = chunk_document_id(record.name, record.sha256, index)
            document = await read_document(self._container, chunk_id, record.name)
            if document is None:
                reject(
                    RejectionReason.MISSING,
                    f"chunk {index} of {count} of projection {record.name!r} is missing",
                )
            try:
                return base64.b64decode(document["data"], validate=True)
            except (KeyError, TypeError, ValueError) as error:
                reject(
                    RejectionReason.CORRUPT,
                    f"chunk {index} of projection {record.name!r} is unreadable: {error!r}",
                )

        pieces: list[bytes] = []
        for start in range(0, count, _WINDOW):
            window = range(start, min(start + _WINDOW, count))
            pieces += await asyncio.gather(*(chunk(i) for i in window))
        return b"".join(pieces)

    async def save(self, record: ProjectionRecord) -> bool:
        name, head_id = record.name, snapshot_id(record.name)
        payload = record.payload
        pieces: list[bytes] = []
        if payload is not None and len(payload) > self._chunk_bytes:
            step = self._chunk_bytes
            pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
        body = head_document(record, chunks=len(pieces))
        chunks_written = False
        with translate_errors(self._endpoint, writing=True):
            while True:
                current = await read_document(self._container, head_id, name)
                if current is not None and not _replaced_by(current, record):
                    if chunks_written:  # ours, unless the stored head names them too
                        await self._delete_chunks(name, _chunk_ids(body) - _chunk_ids(current))
                    return False
                if not chunks_written:
                    # Every chunk lands before the head names it: a crash in between
                    # leaves the old head, whole, and unreferenced chunks.
                    for start in range(0, len(pieces), _WINDOW):
                        await asyncio.gather(
                            *(
                                self._container.upsert_item(chunk_document(record, i, pieces[i]))
                                for i in range(start, min(start + _WINDOW, len(pieces)))
                            )
                        )
                    chunks_written = True
                if await write_unless_changed(self._container, body, current):
                    break
        if current is not None:
            # Only now that the head names the new bytes may the old chunks go.
            await self._delete_chunks(name, _chunk_ids(current) - _chunk_ids(body))
        return True

    async def _delete_chunks(self, name: str, chunk_ids: set[str]) -> None:
        for chunk_id in sorted(chunk_ids):
            try:
                await self._container.delete_item(chunk_id, partition_key=name)
            except CosmosResourceNotFoundError:
                pass
            except CosmosHttpResponseError as error:
                # The state is saved; an old chunk left behind costs storage, not
                # correctness (`delete` removes it with the projection).
                log.warning("old chunk %s of projection %s not deleted: %s", chunk_id, name, error)

    async def delete(self, name: str) -> None:
        with translate_errors(self._endpoint, writing=True):
            # The head first: no reader finds a head whose chunks are going.
            with suppress(CosmosResourceNotFoundError):
                await self._container.delete_item(snapshot_id(name), partition_key=name)
            ids = [
                i
                async for page in query_pages(
                    self._container, _PARTITION_IDS, {"@pk": name}, pk=name
                )
                for i in page
            ]
            for document_id in ids:
                with suppress(CosmosResourceNotFoundError):
                    await self._container.delete_item(document_id, partition_key=name)

    async def names(self) -> list[str]:
        with translate_errors(self._endpoint):
            names = [n async for page in query_pages(self._container, _NAMES, {}) for n in page]
        return sorted(n for n in names if isinstance(n, str))

    async def close(self) -> None:
        return None


def head_document(record: ProjectionRecord, *, chunks: int) -> dict[str, Any]:
    """The head document of `record`, its bytes inline unless they are in `chunks`."""
    check_storable(record, positions_below=10**POSITION_DIGITS)
    payload = record.payload
    return {
        "id": snapshot_id(record.name),
        "pk": record.name,
        "kind": HEAD,
        "projector_version": record.projector_version,
        "schema_fingerprint": record.schema_fingerprint,
        "position": f"{record.position:0{POSITION_DIGITS}d}",
        "events_applied": record.events_applied,
        "taken_at": record.taken_at.isoformat(),
        "encoding": record.encoding,
        "size": record.size,
        "sha256": record.sha256,
        "payload": None if payload is None or chunks else base64.b64encode(payload).decode(),
        "chunks": chunks,
        "blob_key": record.blob_key,
        "signature": record.signature,
    }


def head_record(name: str, head: dict[str, Any]) -> tuple[ProjectionRecord, int]:
    """The record a head document holds and how many chunks hold its bytes (then its
    `payload` is empty until they are read). Raises `SnapshotRejectedError` (corrupt)."""
    try:
        chunks = head["chunks"]
        if type(chunks) is not int or chunks < 0:
            raise ValueError(f"chunks {chunks!r} is not a count")
        if head["kind"] != HEAD:
            raise ValueError(f"kind {head['kind']!r}")
        position = head["position"]
        if isinstance(position, str) and _POSITION.fullmatch(position):
            position = int(position)
        inline = head["payload"]
        if chunks and inline is not None:
            raise ValueError("a head with chunks has no payload of its own")
        payload = b"" if chunks else None
        if inline is not None:
            payload = base64.b64decode(inline, validate=True)
        row = (
            head["pk"],
            head["projector_version"],
            head["schema_fingerprint"],
            position,
            head["events_applied"],
            head["taken_at"],
            head["encoding"],
            head["size"],
            head["sha256"],
            payload,
            head["blob_key"],
            head["signature"],
        )
    except (KeyError, TypeError, ValueError) as error:
        reject(RejectionReason.CORRUPT, f"projection document of {name!r} is unreadable: {error!r}")
    return projection_from_columns(name, row), chunks


def chunk_document_id(name: str, sha256: str, index: int) -> str:
    """A chunk's id: the head's id, the digest of the bytes and the chunk's index, so a
    save of other bytes never overwrites the chunks the current head names."""
    return f"{snapshot_id(name)}.{sha256}.{index}"


def chunk_document(record: ProjectionRecord, index: int, data: bytes) -> dict[str, Any]:
    return {
        "id": chunk_document_id(record.name, record.sha256, index),
        "pk": record.name,
        "kind": CHUNK,
        "data": base64.b64encode(data).decode(),
    }


def _chunk_ids(head: dict[str, Any]) -> set[str]:
    """The ids of the chunks a head document names (none if it cannot name any)."""
    chunks, sha256, name = head.get("chunks"), head.get("sha256"), head.get("pk")
    if type(chunks) is not int or not isinstance(sha256, str) or not isinstance(name, str):
        return set()
    if not _SHA256.fullmatch(sha256):
        return set()
    return {chunk_document_id(name, sha256, i) for i in range(chunks)}


def _replaced_by(head: dict[str, Any], record: ProjectionRecord) -> bool:
    """Whether `record` replaces the stored head (an unreadable head always is)."""
    try:
        stored, _ = head_record(record.name, head)
    except SnapshotRejectedError:
        return True
    return record.replaces(stored)
