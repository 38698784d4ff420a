"""Commit documents: their position layout, the queries over them (paged), and the
events written into and read back out of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent
from sekiban.errors import EventStreamCorruptError

POSITION_BITS = 16
MAX_EVENTS_PER_APPEND = 1 << POSITION_BITS
"""A commit's events are numbered in the low 16 bits of their positions."""
KEY_DIGITS = 30
_MAX_PAGE = 1000

# `c.pk = @pk` is in every partition query although `partition_key=` is passed too:
# the local server ignores `partition_key=` on queries.
IS_BOUNDARY = "SELECT VALUE c.id FROM c WHERE c.pk = @pk AND c.last_version = @version"
STREAM_VERSION = "SELECT VALUE MAX(c.last_version) FROM c WHERE c.pk = @pk"
READ_STREAM = (
    "SELECT c.ordering_key, c.events FROM c "
    "WHERE c.pk = @pk AND c.last_version > @after ORDER BY c.first_version"
)
READ_COMMAND = (
    "SELECT c.ordering_key, c.events FROM c WHERE c.pk = @pk AND c.command_key = @command_key"
)
READ_ALL = (
    "SELECT c.pk, c.ordering_key, c.events FROM c "
    "WHERE c.ordering_key >= @from AND c.ordering_key < @bound ORDER BY c.ordering_key"
)


async def query_pages(
    container: Any,
    query: str,
    parameters: dict[str, Any],
    *,
    pk: str | None = None,
    page_size: int | None = None,
) -> AsyncIterator[list[Any]]:
    """The query's result pages, fetched one continuation token at a time."""
    options: dict[str, Any] = {
        "parameters": [{"name": name, "value": value} for name, value in parameters.items()]
    }
    if pk is not None:
        options["partition_key"] = pk
    if page_size is not None:
        options["max_item_count"] = max(1, min(page_size, _MAX_PAGE))
    async for page in container.query_items(query, **options).by_page():
        yield [item async for item in page]


def command_key(command_id: str | None, commit_id: str) -> str:
    """The unique key of a commit: its command id, or for a commit without one its own
    id (Cosmos DB counts a missing unique key as a value, allowed once per partition).
    The prefixes keep the two kinds apart, whatever a command id holds."""
    return f"commit:{commit_id}" if command_id is None else f"command:{command_id}"


def event_document(event: StoredEvent) -> dict[str, Any]:
    document = event.to_dict()
    del document["partition_keys"], document["position"]  # the commit's pk; set on read
    return document


def stored_events(commit: Mapping[str, Any], keys: PartitionKeys) -> list[StoredEvent]:
    try:
        base = int(commit["ordering_key"]) << POSITION_BITS
        return [
            StoredEvent(
                id=e["id"],
                sortable_unique_id=e["sortable_unique_id"],
                version=e["version"],
                partition_keys=keys,
                event_type=e["event_type"],
                payload=e["payload"],
                timestamp=datetime.fromisoformat(e["timestamp"]),
                causation_id=e["causation_id"],
                correlation_id=e["correlation_id"],
                executed_user=e["executed_user"],
                position=base + index,
            )
            for index, e in enumerate(commit["events"])
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise EventStreamCorruptError(
            f"unreadable commit document in stream {keys}: {error!r}"
        ) from None


def parse_keys(pk: object) -> PartitionKeys:
    try:
        return PartitionKeys.parse(pk)  # type: ignore[arg-type]
    except ValueError as error:
        raise EventStreamCorruptError(f"commit document with bad pk {pk!r}: {error}") from None
