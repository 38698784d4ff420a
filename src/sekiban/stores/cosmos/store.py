"""The Cosmos DB event store: the commit-document append with its boundary checks and
remembered boundaries, the stream and all-events reads, and the ways to connect."""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any

from sekiban._extras import require_extra
from sekiban.core.clock import utc_now
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.serialization import StoredEvent
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateCommandError,
    PayloadTooLargeError,
)
from sekiban.stores.cosmos.commits import (
    IS_BOUNDARY,
    KEY_DIGITS,
    MAX_EVENTS_PER_APPEND,
    POSITION_BITS,
    READ_ALL,
    READ_COMMAND,
    READ_STREAM,
    STREAM_VERSION,
    command_key,
    event_document,
    parse_keys,
    query_pages,
    stored_events,
)
from sekiban.stores.protocols import (
    DEFAULT_BATCH_SIZE,
    ClosesOnExit,
    check_append,
    check_batch_size,
    check_command_id,
    rebatch,
)
from sekiban.stores.stream_keys import StreamKeys

with require_extra("cosmos", "sekiban.stores.cosmos"):
    from azure.cosmos.exceptions import CosmosResourceExistsError, CosmosResourceNotFoundError

    from sekiban.stores.cosmos.connection import (
        CosmosContainers,
        open_containers,
        parse_connection_string,
        settings_from_env,
        translate_errors,
    )
    from sekiban.stores.cosmos.projections import CosmosProjectionStore
    from sekiban.stores.cosmos.snapshots import CosmosSnapshotStore

# The package's logger, the name the docs tell users to watch for late commits.
log = logging.getLogger("sekiban.stores.cosmos")

DEFAULT_SAFE_WINDOW = timedelta(seconds=5)
DEFAULT_MAX_COMMIT_BYTES = 1_900_000
_KNOWN_BOUNDARIES = 10_000
"""Streams whose latest known commit boundary an event store remembers (see append)."""


class CosmosEventStore(ClosesOnExit):
    """Event streams as commit documents in a Cosmos DB container; see the module docs.

    Open it with `async with await CosmosEventStore.open(...) as store:` (or
    `from_connection_string`, `from_env`); leaving the block (or `close()`) closes the
    client, which `snapshot_store()` and `projection_store()` share.
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
    async def open(
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
        """`open` with the endpoint and key of `AccountEndpoint=...;AccountKey=...;`."""
        endpoint, key = parse_connection_string(connection_string)
        return await cls.open(endpoint=endpoint, key=key, **options)

    @classmethod
    async def from_env(cls, **options: Any) -> CosmosEventStore:
        """`open` as SEKIBAN_COSMOS_CONNECTION_STRING, or SEKIBAN_COSMOS_ENDPOINT and
        SEKIBAN_COSMOS_KEY, and SEKIBAN_COSMOS_DATABASE say; `options` win over them.
        Raises `ConfigurationError` naming a missing variable."""
        return await cls.open(**{**settings_from_env(), **options})

    def snapshot_store(self) -> CosmosSnapshotStore:
        """The snapshot store beside this event store, sharing its client."""
        return CosmosSnapshotStore(self.containers.snapshots, endpoint=self._endpoint)

    def projection_store(self) -> CosmosProjectionStore:
        """The projection store beside this event store, sharing its client."""
        return CosmosProjectionStore(self.containers.projections, endpoint=self._endpoint)

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        keys = check_append(events, expected_version, MAX_EVENTS_PER_APPEND)
        command_id = check_command_id(command_id)
        pk = str(keys)
        commit_id = f"{expected_version:010d}"
        commit: dict[str, Any] = {
            "id": commit_id,
            "pk": pk,
            "first_version": expected_version + 1,
            "last_version": expected_version + len(events),
            "ordering_key": "0" * KEY_DIGITS,  # the real key is taken just before create
            "command_key": command_key(command_id, commit_id),
            "events": [event_document(e) for e in events],
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
                # The head may have landed since the check: a stream now at exactly the
                # expected version is what the append expects, not a conflict.
                actual = await self._stream_version(pk)
                if actual != expected_version:
                    raise ConcurrencyError(keys, expected_version, actual)
        with translate_errors(self._endpoint, writing=True):
            commit["ordering_key"] = SortableUniqueId.generate()
            started = time.monotonic()
            try:
                await self._events.create_item(commit)
            except CosmosResourceExistsError:
                # The commit's id (its version) or its command key is taken.
                if not await self._is_own_commit(pk, commit):
                    if command_id is not None and await self._command_commits(pk, command_id):
                        raise DuplicateCommandError(keys, command_id) from None
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

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        with translate_errors(self._endpoint):
            commits = await self._command_commits(str(partition_keys), command_id)
        return stored_events(commits[0], partition_keys) if commits else None

    async def _command_commits(self, pk: str, command_id: str) -> list[Any]:
        key = command_key(command_id, commit_id="")  # a command's key has no commit id
        return await self._query_values(READ_COMMAND, pk, {"@pk": pk, "@command_key": key})

    async def _is_boundary(self, pk: str, version: int) -> bool:
        """Whether a commit of the stream ends at exactly `version`."""
        found = await self._query_values(IS_BOUNDARY, pk, {"@pk": pk, "@version": version})
        return bool(found)

    async def _stream_version(self, pk: str) -> int:
        found = await self._query_values(STREAM_VERSION, pk, {"@pk": pk})
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
            item
            async for page in query_pages(self._events, query, parameters, pk=pk)
            for item in page
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
                async for page in query_pages(
                    self._events, READ_STREAM, parameters, pk=pk, page_size=batch_size
                ):
                    # A commit at a time: a page of large commits decoded at once
                    # could hold far more than a batch.
                    for commit in page:
                        stored = stored_events(commit, partition_keys)
                        if stored:
                            self._remember_boundary(pk, stored[-1].version)
                        # The first commit may start before after_version.
                        yield [e for e in stored if e.version > after_version]

        return rebatch(pages(), batch_size)

    def read_all(
        self, after_position: int = 0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> AsyncIterator[list[StoredEvent]]:
        check_batch_size(batch_size)
        after_key, after_index = divmod(max(after_position, 0), 1 << POSITION_BITS)
        # One bound for the whole read, so every page sees the same cut.
        bound = SortableUniqueId.min_for(utc_now() - self._safe_window)
        parameters = {"@from": f"{after_key:0{KEY_DIGITS}d}", "@bound": bound}
        streams = StreamKeys(parse_keys)

        async def pages() -> AsyncIterator[list[StoredEvent]]:
            with translate_errors(self._endpoint):
                async for page in query_pages(
                    self._events, READ_ALL, parameters, page_size=batch_size
                ):
                    # A commit at a time, as in read_stream: a page holds up to
                    # batch_size commits, each of up to 65,536 events.
                    for commit in page:
                        pk = commit.get("pk")
                        keys = streams.get(pk) if isinstance(pk, str) else parse_keys(pk)
                        stored = stored_events(commit, keys)
                        if commit["ordering_key"] == parameters["@from"]:
                            stored = stored[after_index + 1 :]  # the commit we stopped inside
                        yield stored

        return rebatch(pages(), batch_size)

    async def drop(self) -> None:
        """Delete this store's containers (for per-test containers)."""
        self._boundaries.clear()
        c = self.containers
        with translate_errors(self._endpoint):
            for container in (c.events, c.snapshots, c.projections):
                with suppress(CosmosResourceNotFoundError):
                    await c.database.delete_container(container.id)

    async def close(self) -> None:
        """Close the client (also the one the snapshot and projection stores share)."""
        with translate_errors(self._endpoint):
            await self.containers.client.close()
