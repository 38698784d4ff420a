"""The Cosmos DB snapshot store: one document per (aggregate, projector) in its own
container, replaced only by a snapshot that is not older (guarded by its ETag)."""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import suppress
from typing import Any

from sekiban._extras import require_extra
from sekiban.core.partition_keys import PartitionKeys
from sekiban.errors import SnapshotRejectedError
from sekiban.snapshot.types import AggregateSnapshot, RejectionReason, SnapshotRejection
from sekiban.stores.protocols import ClosesOnExit

with require_extra("cosmos", "sekiban.stores.cosmos"):
    from azure.core import MatchConditions
    from azure.cosmos.exceptions import (
        CosmosHttpResponseError,
        CosmosResourceExistsError,
        CosmosResourceNotFoundError,
    )

    from sekiban.stores.cosmos.connection import translate_errors

_PLAIN_ID = re.compile(r"[A-Za-z0-9_:@=-]{1,200}")


class CosmosSnapshotStore(ClosesOnExit):
    """The latest snapshot per (aggregate, projector), one document each.

    Obtained from `CosmosEventStore.snapshot_store()`; `close()` leaves the shared
    client to the event store.
    """

    def __init__(self, container: Any, *, endpoint: str) -> None:
        self._container = container
        self._endpoint = endpoint

    async def get(
        self, partition_keys: PartitionKeys, projector_name: str
    ) -> AggregateSnapshot | None:
        with translate_errors(self._endpoint):
            try:
                document = await self._container.read_item(
                    snapshot_id(projector_name), partition_key=str(partition_keys)
                )
            except CosmosResourceNotFoundError:
                return None
        snapshot = AggregateSnapshot.from_json(json.dumps(document))
        if (
            snapshot.partition_keys != partition_keys
            or snapshot.metadata.projector_name != projector_name
        ):
            raise SnapshotRejectedError(
                SnapshotRejection(
                    RejectionReason.CORRUPT,
                    f"snapshot document of {partition_keys} / {projector_name} belongs to "
                    f"{snapshot.partition_keys} / {snapshot.metadata.projector_name}",
                )
            )
        return snapshot

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        pk = str(snapshot.partition_keys)
        document_id = snapshot_id(snapshot.metadata.projector_name)
        body = {"id": document_id, "pk": pk, **json.loads(snapshot.to_json())}
        with translate_errors(self._endpoint, writing=True):
            # Each lost race (409 on create, 412 on replace) re-reads and decides again.
            while True:
                current = await read_document(self._container, document_id, pk)
                if current is not None:
                    version = current.get("version")
                    # An unreadable version is a corrupt cache entry: replace it.
                    if type(version) is int and version > snapshot.version:
                        return False
                if await write_unless_changed(self._container, body, current):
                    return True

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        with translate_errors(self._endpoint, writing=True), suppress(CosmosResourceNotFoundError):
            await self._container.delete_item(
                snapshot_id(projector_name), partition_key=str(partition_keys)
            )

    async def close(self) -> None:
        return None


async def read_document(container: Any, document_id: str, pk: str) -> dict[str, Any] | None:
    """The document, or None when there is none."""
    try:
        document: dict[str, Any] = await container.read_item(document_id, partition_key=pk)
    except CosmosResourceNotFoundError:
        return None
    return document


async def write_unless_changed(container: Any, body: dict[str, Any], current: Any) -> bool:
    """Create `body` where there was no document (`current` is None), or replace
    `current` guarded by its ETag. False when another writer got there first (409 on
    create, 412 on replace, 404 when it was deleted meanwhile): read again, decide again.
    """
    try:
        if current is None:
            await container.create_item(body)
        else:
            await container.replace_item(
                body["id"],
                body,
                etag=current["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )
    except CosmosResourceExistsError:
        return False
    except CosmosHttpResponseError as error:
        if error.status_code not in (404, 412):
            raise
        return False
    return True


def snapshot_id(projector_name: str) -> str:
    """A Cosmos id for a projector name: the name itself unless it has characters Cosmos
    ids forbid (`/ \\ ? #`, control characters) or is too long; then a digest of it."""
    if _PLAIN_ID.fullmatch(projector_name):
        return projector_name
    return "sha256-" + hashlib.sha256(projector_name.encode()).hexdigest()
