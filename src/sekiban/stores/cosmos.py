"""Cosmos DB event and snapshot stores on the async `azure-cosmos` SDK.

Containers. `<container_prefix>-events` and `<container_prefix>-snapshots` in one
database, both partitioned on `/pk` = `str(partition_keys)` (`root@group@uuid`): an
aggregate's commits share one logical partition, and so do its snapshots. Opening the
client and containers, connection strings and connection errors are in
`sekiban.stores.cosmos_connection`.

Appends: one document per commit. A command's events are ONE document,
`{"id": f"{expected_version:010d}", "pk", "first_version", "last_version",
"ordering_key", "events": [StoredEvent.to_dict() without partition_keys and position]}`.
Creating one document is atomic on every Cosmos DB, so no partial commit is ever
visible, and ids are unique within a logical partition, so of two writers at the same
expected version exactly one create succeeds; the other gets 409 → `ConcurrencyError`.
Because a commit's id is the stream version *before* it, a writer whose expected
version was ever the head collides with the commit that moved the stream on from there.
A writer whose expected version was never a head (inside a multi-event commit, or past
the end) would not collide, so an append at `expected_version > 0` first checks, with one
partition-scoped query, that a commit ends at exactly that version. Check-then-create is
race-free because boundaries never disappear: a checked boundary is either still the
head (one create at that id wins) or already followed by a commit (the create gets 409).
A stale read can only miss boundaries, which rejects a valid append (the caller reloads
and retries) and never accepts an invalid one. For the same reason the store remembers
the newest boundary it has seen per stream (its own appends, reads, conflicts) and skips
the query when appending there: the usual load-then-append costs one request.
This relies on commits never being deleted (no TTL, no manual deletes in the container).

A commit document must stay under `max_commit_bytes` (default 1,900,000: Cosmos items
are limited to 2 MB), measured as the ASCII JSON the SDK sends; a larger one raises
`PayloadTooLargeError` and nothing is written. At most 2**16 events per commit.
On 409 the store reads the commit it collided with: if that holds this append's first
event id, an earlier attempt of this same request landed (an SDK retry after a lost
answer), so the append succeeded; reporting a conflict would make the executor run the
command again.

Not chosen: an ETag-guarded stream-head document plus event documents (two writes; with
no atomic batch, a crash between them leaves half a commit), a stored procedure or
transactional batch (atomic on real Cosmos DB only, so the tested code would not be the
shipped code), one document per event (atomic only for one-event commands).

Global order. Each commit gets an ordering key, a fresh `SortableUniqueId` (30 digits:
.NET ticks, then random digits; string order is numeric order) taken immediately before
its create, and event `i` of a commit gets position `int(ordering_key) * 2**16 + i` (an
unbounded Python int; not dense). `read_all` is a cross-partition query in ordering-key
order that returns only commits whose key is below the safe bound
`SortableUniqueId.min_for(now - safe_window)`, fixed at the start of the call: a commit
whose create was still in flight when a reader passed its key would otherwise be missed
for good, as no later read starts below the reader's last position.

That holds while every commit is visible to readers less than `safe_window` (default
5 s) after its key was taken, on the reader's clock: create latency (including the SDK's
retries after throttling, 429) + how far a writer's clock is behind a reader's +
replication lag (until readers in other processes or regions see the write) must stay
under the window. Multi-projections therefore see nothing younger than the window. A create
cannot be undone, so an append that took longer than the window is not failed (its
events are committed, and an error would make the executor run the command again): it
is logged as an ERROR and counted in `late_commits`, and a projection that may have
skipped it can be rebuilt from position 0. `safe_window=timedelta(0)` gives the
guarantee up (for tests with one writer at a time). Two commits from different processes
in the same 100 ns tick with the same 11 random digits would share positions:
negligible, not impossible.
Not chosen: a global counter document (serialises every append in the account through
one document and still needs gap handling), the change feed (ordered per partition only,
and its continuation does not work on the local server), `_ts` (whole seconds).

Snapshots live in their own container, one document per (aggregate, projector): id =
the projector name (a digest of it if it has characters Cosmos ids forbid), the fields
of `AggregateSnapshot.to_json` (payload in base64). Their own container keeps snapshot
writes out of the events' queries and indexing and can be dropped to reset the cache.
`save` reads the current document and replaces it only if that is not newer, guarded by
its ETag; a lost race (409 on create, 412 on replace) re-reads and decides again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from sekiban._extras import require_extra
from sekiban.core.clock import utc_now
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.errors import (
    ConcurrencyError,
    ConfigurationError,
    EventStreamCorruptError,
    PayloadTooLargeError,
    SnapshotRejectedError,
)
from sekiban.snapshot.types import AggregateSnapshot, RejectionReason, SnapshotRejection
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, check_append, check_batch_size, rebatch

with require_extra("cosmos", "sekiban.stores.cosmos"):
    from azure.core import MatchConditions
    from azure.cosmos.exceptions import (
        CosmosHttpResponseError,
        CosmosResourceExistsError,
        CosmosResourceNotFoundError,
    )

    from sekiban.stores.cosmos_connection import (
        CosmosContainers,
        open_containers,
        parse_connection_string,
        settings_from_env,
        translate_errors,
    )

log = logging.getLogger(__name__)

DEFAULT_SAFE_WINDOW = timedelta(seconds=5)
DEFAULT_MAX_COMMIT_BYTES = 1_900_000
_POSITION_BITS = 16
MAX_EVENTS_PER_APPEND = 1 << _POSITION_BITS
"""A commit's events are numbered in the low 16 bits of their positions."""
_KEY_DIGITS = 30
_MAX_PAGE = 1000
_PLAIN_ID = re.compile(r"[A-Za-z0-9_:@=-]{1,200}")
_KNOWN_BOUNDARIES = 10_000
"""Streams whose latest known commit boundary an event store remembers (see append)."""

# `c.pk = @pk` is in every partition query although `partition_key=` is passed too:
# the local server ignores `partition_key=` on queries.
_IS_BOUNDARY = "SELECT VALUE c.id FROM c WHERE c.pk = @pk AND c.last_version = @version"
_STREAM_VERSION = "SELECT VALUE MAX(c.last_version) FROM c WHERE c.pk = @pk"
_READ_STREAM = (
    "SELECT c.ordering_key, c.events FROM c "
    "WHERE c.pk = @pk AND c.last_version > @after ORDER BY c.first_version"
)
_READ_ALL = (
    "SELECT c.pk, c.ordering_key, c.events FROM c "
    "WHERE c.ordering_key >= @from AND c.ordering_key < @bound ORDER BY c.ordering_key"
)


class CosmosEventStore:
    """Event streams as commit documents in a Cosmos DB container; see the module docs.

    Create it with `await CosmosEventStore.connect(...)`, `from_connection_string` or
    `from_env`. `close()` closes the client, which `snapshot_store()` shares.
    """

    def __init__(
        self,
        containers: CosmosContainers,
        *,
        safe_window: timedelta = DEFAULT_SAFE_WINDOW,
        max_commit_bytes: int = DEFAULT_MAX_COMMIT_BYTES,
    ) -> None:
        if safe_window < timedelta(0):
            raise ConfigurationError(f"safe_window must not be negative, got {safe_window}")
        self.containers = containers
        """The client and containers, for tools and tests that need the raw SDK."""
        self._events = containers.events
        self._endpoint = containers.endpoint
        self._safe_window = safe_window
        self._max_commit_bytes = max_commit_bytes
        # The newest version known to end a commit, per stream. Boundaries never
        # disappear, so a remembered one is still one: an append there skips the query.
        self._boundaries: OrderedDict[str, int] = OrderedDict()
        self.late_commits = 0
        """Appends that took longer than the safe window (see the module docstring)."""

    @classmethod
    async def connect(
        cls,
        *,
        endpoint: str,
        key: str,
        database: str = "sekiban",
        container_prefix: str = "sekiban",
        throughput: int | None = None,
        autoscale: bool = False,
        create: bool = True,
        safe_window: timedelta = DEFAULT_SAFE_WINDOW,
        max_commit_bytes: int = DEFAULT_MAX_COMMIT_BYTES,
        client_options: Mapping[str, Any] | None = None,
    ) -> CosmosEventStore:
        """Open a client on `endpoint` and, with `create`, create missing containers.

        `throughput` is RU/s for the database when this creates it (the autoscale
        maximum with `autoscale`); `client_options` go to `azure.cosmos.aio.CosmosClient`
        as they are. Raises `ConfigurationError` for bad names or a key that is not
        base64 (before connecting) and for missing containers without `create`;
        `StoreConnectionError` / `StoreAuthenticationError` when the server cannot be
        reached or refuses the key.
        """
        containers = await open_containers(
            endpoint=endpoint,
            key=key,
            database=database,
            container_prefix=container_prefix,
            throughput=throughput,
            autoscale=autoscale,
            create=create,
            client_options=client_options,
        )
        try:
            return cls(containers, safe_window=safe_window, max_commit_bytes=max_commit_bytes)
        except BaseException:
            await containers.client.close()
            raise

    @classmethod
    async def from_connection_string(
        cls, connection_string: str, **options: Any
    ) -> CosmosEventStore:
        """`connect` with the endpoint and key of `AccountEndpoint=...;AccountKey=...;`."""
        endpoint, key = parse_connection_string(connection_string)
        return await cls.connect(endpoint=endpoint, key=key, **options)

    @classmethod
    async def from_env(cls, **options: Any) -> CosmosEventStore:
        """`connect` as SEKIBAN_COSMOS_CONNECTION_STRING, or SEKIBAN_COSMOS_ENDPOINT and
        SEKIBAN_COSMOS_KEY, and SEKIBAN_COSMOS_DATABASE say; `options` win over them.
        Raises `ConfigurationError` naming a missing variable."""
        return await cls.connect(**{**settings_from_env(), **options})

    def snapshot_store(self) -> CosmosSnapshotStore:
        """The snapshot store beside this event store, sharing its client."""
        return CosmosSnapshotStore(self.containers.snapshots, endpoint=self._endpoint)

    async def append(self, events: Sequence[StoredEvent], expected_version: int) -> None:
        keys = check_append(events, expected_version, MAX_EVENTS_PER_APPEND)
        pk = str(keys)
        commit: dict[str, Any] = {
            "id": f"{expected_version:010d}",
            "pk": pk,
            "first_version": expected_version + 1,
            "last_version": expected_version + len(events),
            "ordering_key": "0" * _KEY_DIGITS,  # the real key is taken just before create
            "events": [_event_document(e) for e in events],
        }
        size = len(json.dumps(commit, separators=(",", ":")))  # ASCII: characters == bytes
        if size > self._max_commit_bytes:
            largest = max(events, key=lambda e: len(e.payload))
            raise PayloadTooLargeError(
                f"{largest.event_type} (in a commit of {len(events)} events)",
                size,
                self._max_commit_bytes,
            )
        with translate_errors(self._endpoint):
            if (
                expected_version > 0
                and self._boundaries.get(pk) != expected_version
                and not await self._is_boundary(pk, expected_version)
            ):
                raise ConcurrencyError(keys, expected_version, await self._stream_version(pk))
            commit["ordering_key"] = SortableUniqueId.generate()
            started = time.monotonic()
            try:
                await self._events.create_item(commit)
            except CosmosResourceExistsError:
                if not await self._is_own_commit(pk, commit):
                    actual = await self._stream_version(pk)
                    raise ConcurrencyError(keys, expected_version, actual) from None
            elapsed = time.monotonic() - started
        self._remember_boundary(pk, commit["last_version"])
        if self._safe_window and elapsed >= self._safe_window.total_seconds():
            self.late_commits += 1
            log.error(
                "append to %s at version %d took %.3f s, longer than the read_all safe window "
                "of %s: a multi-projection reading meanwhile may have skipped its events; "
                "rebuild such projections from position 0 or raise safe_window",
                keys,
                expected_version,
                elapsed,
                self._safe_window,
            )

    async def _is_boundary(self, pk: str, version: int) -> bool:
        """Whether a commit of the stream ends at exactly `version`."""
        found = await self._query_values(_IS_BOUNDARY, pk, {"@pk": pk, "@version": version})
        return bool(found)

    async def _stream_version(self, pk: str) -> int:
        found = await self._query_values(_STREAM_VERSION, pk, {"@pk": pk})
        version = int(found[0]) if found and found[0] is not None else 0
        self._remember_boundary(pk, version)  # the last version of the newest commit
        return version

    def _remember_boundary(self, pk: str, version: int) -> None:
        if version <= self._boundaries.get(pk, 0):
            return
        self._boundaries[pk] = version
        self._boundaries.move_to_end(pk)
        if len(self._boundaries) > _KNOWN_BOUNDARIES:
            self._boundaries.popitem(last=False)

    async def _is_own_commit(self, pk: str, commit: dict[str, Any]) -> bool:
        try:
            stored = await self._events.read_item(commit["id"], partition_key=pk)
        except CosmosResourceNotFoundError:
            return False
        stored_events = stored.get("events") or [{}]
        return bool(stored_events[0].get("id") == commit["events"][0]["id"])

    async def _query_values(self, query: str, pk: str, parameters: dict[str, Any]) -> list[Any]:
        return [
            item async for page in _pages(self._events, query, parameters, pk=pk) for item in page
        ]

    def read_stream(
        self,
        partition_keys: PartitionKeys,
        after_version: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        pk = str(partition_keys)
        parameters = {"@pk": pk, "@after": after_version}

        async def pages() -> AsyncIterator[list[StoredEvent]]:
            with translate_errors(self._endpoint):
                async for page in _pages(
                    self._events, _READ_STREAM, parameters, pk=pk, page_size=batch_size
                ):
                    events: list[StoredEvent] = []
                    for commit in page:
                        stored = _stored_events(commit, partition_keys)
                        if stored:
                            self._remember_boundary(pk, stored[-1].version)
                        # The first commit may start before after_version.
                        events += [e for e in stored if e.version > after_version]
                    yield events

        return rebatch(pages(), batch_size)

    def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        after_key, after_index = divmod(max(after_position, 0), 1 << _POSITION_BITS)
        # One bound for the whole read, so every page sees the same cut.
        bound = SortableUniqueId.min_for(utc_now() - self._safe_window)
        parameters = {"@from": f"{after_key:0{_KEY_DIGITS}d}", "@bound": bound}
        streams: dict[str, PartitionKeys] = {}

        async def pages() -> AsyncIterator[list[StoredEvent]]:
            with translate_errors(self._endpoint):
                async for page in _pages(self._events, _READ_ALL, parameters, page_size=batch_size):
                    events: list[StoredEvent] = []
                    for commit in page:
                        pk = commit.get("pk")
                        keys = streams.get(pk) if isinstance(pk, str) else None
                        if keys is None:
                            keys = streams[pk] = _parse_keys(pk)
                        stored = _stored_events(commit, keys)
                        if commit["ordering_key"] == parameters["@from"]:
                            stored = stored[after_index + 1 :]  # the commit we stopped inside
                        events += stored
                    yield events

        return rebatch(pages(), batch_size)

    async def drop(self) -> None:
        """Delete this store's two containers (for per-test containers)."""
        self._boundaries.clear()
        c = self.containers
        with translate_errors(self._endpoint):
            for container in (c.events, c.snapshots):
                with suppress(CosmosResourceNotFoundError):
                    await c.database.delete_container(container.id)

    async def close(self) -> None:
        """Close the client (also the one the snapshot store shares)."""
        await self.containers.client.close()


class CosmosSnapshotStore:
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
                    _snapshot_id(projector_name), partition_key=str(partition_keys)
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
        document_id = _snapshot_id(snapshot.metadata.projector_name)
        body = {"id": document_id, "pk": pk, **json.loads(snapshot.to_json())}
        with translate_errors(self._endpoint):
            # Each lost race (409 on create, 412 on replace) re-reads and decides again.
            while True:
                try:
                    current = await self._container.read_item(document_id, partition_key=pk)
                except CosmosResourceNotFoundError:
                    try:
                        await self._container.create_item(body)
                        return True
                    except CosmosResourceExistsError:
                        continue
                version = current.get("version")
                # An unreadable version is a corrupt cache entry: replace it.
                if type(version) is int and version > snapshot.version:
                    return False
                try:
                    await self._container.replace_item(
                        document_id,
                        body,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                    return True
                except CosmosHttpResponseError as error:
                    if error.status_code not in (404, 412):  # deleted or changed meanwhile
                        raise

    async def delete(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        with translate_errors(self._endpoint), suppress(CosmosResourceNotFoundError):
            await self._container.delete_item(
                _snapshot_id(projector_name), partition_key=str(partition_keys)
            )

    async def close(self) -> None:
        return None


async def _pages(
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


def _event_document(event: StoredEvent) -> dict[str, Any]:
    document = event.to_dict()
    del document["partition_keys"], document["position"]  # the commit's pk; set on read
    return document


def _stored_events(commit: Mapping[str, Any], keys: PartitionKeys) -> list[StoredEvent]:
    try:
        base = int(commit["ordering_key"]) << _POSITION_BITS
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


def _parse_keys(pk: object) -> PartitionKeys:
    try:
        return PartitionKeys.parse(pk)  # type: ignore[arg-type]
    except ValueError as error:
        raise EventStreamCorruptError(f"commit document with bad pk {pk!r}: {error}") from None


def _snapshot_id(projector_name: str) -> str:
    """A Cosmos id for a projector name: the name itself unless it has characters Cosmos
    ids forbid (`/ \\ ? #`, control characters) or is too long; then a digest of it."""
    if _PLAIN_ID.fullmatch(projector_name):
        return projector_name
    return "sha256-" + hashlib.sha256(projector_name.encode()).hexdigest()
