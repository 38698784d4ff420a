"""Cosmos DB stores against the local Cosmos-compatible server: atomic commits under
racing writers, rejected appends, snapshot races and configuration errors.

What every store guarantees is in `tests/conformance/`; these tests press on what is
particular to the commit-document design (see `sekiban.stores.cosmos`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import traceback
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from sekiban import ConcurrencyError, PartitionKeys, StoredEvent
from sekiban.errors import (
    ConfigurationError,
    PayloadTooLargeError,
    StoreAuthenticationError,
    StoreConnectionError,
)
from sekiban.stores.cosmos import CosmosEventStore, CosmosSnapshotStore
from sekiban.stores.cosmos.connection import parse_connection_string
from tests.conformance.backends import require_env
from tests.conformance.test_snapshot_store import snapshot_at
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.support import free_port, stored_events

pytestmark = pytest.mark.cosmos

KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
"""A well-formed key (the public one of the Cosmos DB emulator), for servers that refuse it."""


async def connect(**options: Any) -> CosmosEventStore:
    """A store on fresh containers of the local server."""
    return await CosmosEventStore.open(
        endpoint=require_env("SEKIBAN_COSMOS_ENDPOINT"),
        key=require_env("SEKIBAN_COSMOS_KEY"),
        container_prefix=f"t-{uuid.uuid4().hex[:12]}",
        **options,
    )


@pytest.fixture
async def store() -> AsyncIterator[CosmosEventStore]:
    store = await connect(safe_window=timedelta(0))
    try:
        yield store
    finally:
        try:
            await store.drop()
        finally:
            await store.close()


async def read_stream(store: CosmosEventStore, keys: PartitionKeys) -> list[StoredEvent]:
    return [e async for batch in store.read_stream(keys) for e in batch]


async def test_racing_appenders_get_one_winner_per_version_and_never_a_partial_commit(
    store: CosmosEventStore,
) -> None:
    keys = PartitionKeys.generate()
    writers, commits = 8, 40
    won: list[tuple[int, int, str]] = []  # (first version, event count, writer)
    observed: list[list[int]] = []
    done = asyncio.Event()

    # Two stores on the same containers stand for two processes: each remembers only
    # the boundaries it has seen itself.
    stores = [store, CosmosEventStore(store.containers, safe_window=timedelta(0))]

    async def writer(name: str, store: CosmosEventStore) -> None:
        rng = random.Random(name)
        version = 0
        while len(won) < commits:
            count = rng.randint(1, 3)
            events = [
                dataclasses.replace(e, executed_user=name)
                for e in stored_events(keys, version + 1, count)
            ]
            try:
                await store.append(events, version)
            except ConcurrencyError as error:
                assert error.actual_version is not None and error.actual_version > version
                version = error.actual_version
                continue
            won.append((version + 1, count, name))
            version += count

    async def reader() -> None:
        while not done.is_set():
            observed.append([e.version for e in await read_stream(store, keys)])
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(f"writer-{i}", stores[i % 2]) for i in range(writers)))
    done.set()
    await reading

    events = await read_stream(store, keys)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    # Every commit that won is in the stream whole, by its writer alone, in order.
    won.sort()
    assert sum(count for _, count, _ in won) == len(events)
    for first, count, name in won:
        assert {e.executed_user for e in events[first - 1 : first - 1 + count]} == {name}
    assert len({name for _, _, name in won}) > 1, "the writers did not race"
    # A reader during the race only ever saw whole commits: prefixes ending on a boundary.
    boundaries = {0} | {first + count - 1 for first, count, _ in won}
    for versions in observed:
        assert versions == list(range(1, len(versions) + 1))
        assert len(versions) in boundaries


async def test_writer_with_a_stale_remembered_head_still_conflicts(
    store: CosmosEventStore,
) -> None:
    other = CosmosEventStore(store.containers, safe_window=timedelta(0))
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 2), 0)  # `store` remembers head 2
    await other.append(stored_events(keys, 3, 1), 2)
    with pytest.raises(ConcurrencyError) as error:
        await store.append(stored_events(keys, 3, 2), 2)
    assert error.value.actual_version == 3
    await store.append(stored_events(keys, 4, 1), 3)  # the conflict taught it head 3
    assert [e.version for e in await read_stream(other, keys)] == [1, 2, 3, 4]


async def test_writers_at_the_same_version_have_exactly_one_winner(
    store: CosmosEventStore,
) -> None:
    keys = PartitionKeys.generate()
    for head in range(0, 30, 3):
        attempts = [stored_events(keys, head + 1, 3) for _ in range(8)]
        results = await asyncio.gather(
            *(store.append(events, head) for events in attempts), return_exceptions=True
        )
        winners = [events for events, result in zip(attempts, results, strict=True) if not result]
        assert len(winners) == 1
        assert all(isinstance(r, ConcurrencyError) for r in results if r is not None)
        stream = await read_stream(store, keys)
        assert [e.id for e in stream[head:]] == [e.id for e in winners[0]]


async def test_expected_version_that_was_never_a_head_is_rejected(
    store: CosmosEventStore,
) -> None:
    keys = PartitionKeys.generate()
    await store.append(stored_events(keys, 1, 3), 0)  # one commit: versions 1..3
    for inside_or_beyond in (1, 2, 4, 10):
        with pytest.raises(ConcurrencyError) as error:
            await store.append(stored_events(keys, inside_or_beyond + 1, 1), inside_or_beyond)
        assert (error.value.expected_version, error.value.actual_version) == (
            inside_or_beyond,
            3,
        )
    assert [e.version for e in await read_stream(store, keys)] == [1, 2, 3]
    await store.append(stored_events(keys, 4, 2), 3)
    assert [e.version for e in await read_stream(store, keys)] == [1, 2, 3, 4, 5]


async def test_a_head_that_lands_between_the_boundary_check_and_the_version_read_is_no_conflict(
    store: CosmosEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The append checks that its expected version ends a commit; when that commit lands
    # just after the check, the stream is at exactly the expected version: the append
    # is valid and must not be refused as "expected at 2 but is at 2".
    other = CosmosEventStore(store.containers, safe_window=timedelta(0))
    keys = PartitionKeys.generate()
    await other.append(stored_events(keys, 1, 2), 0)  # `store` has never seen the stream
    is_boundary = store._is_boundary

    async def checked_before_the_head_landed(pk: str, version: int) -> bool:
        monkeypatch.setattr(store, "_is_boundary", is_boundary)
        await other.append(stored_events(keys, 3, 1), 2)
        return False

    monkeypatch.setattr(store, "_is_boundary", checked_before_the_head_landed)
    await store.append(stored_events(keys, 4, 2), 3)
    assert [e.version for e in await read_stream(other, keys)] == [1, 2, 3, 4, 5]


async def test_commit_over_the_document_limit_is_rejected_and_writes_nothing(
    store: CosmosEventStore,
) -> None:
    keys = PartitionKeys.generate()
    half = '{"note":"' + "x" * 1_000_000 + '"}'
    with pytest.raises(PayloadTooLargeError) as error:
        await store.append(stored_events(keys, 1, 2, payload=half), 0)
    assert error.value.limit == 1_900_000 and error.value.size > 2_000_000
    assert await read_stream(store, keys) == []
    # One such event fits, and then the stream continues normally.
    await store.append(stored_events(keys, 1, 1, payload=half), 0)
    [back] = await read_stream(store, keys)
    assert back.payload == half


async def test_commit_limit_is_configurable() -> None:
    store = await connect(max_commit_bytes=2_000)
    try:
        keys = PartitionKeys.generate()
        with pytest.raises(PayloadTooLargeError):
            await store.append(stored_events(keys, 1, 1, payload='"' + "y" * 2_000 + '"'), 0)
        await store.append(stored_events(keys, 1, 1), 0)
        assert len(await read_stream(store, keys)) == 1
    finally:
        await store.drop()
        await store.close()


async def test_retried_create_that_had_landed_counts_as_success(
    store: CosmosEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SDK retry whose first attempt landed gets 409 from its own commit: that append
    succeeded, and reporting a conflict would make the executor run the command again."""
    keys = PartitionKeys.generate()
    events = stored_events(keys, 1, 2)
    create = store.containers.events.create_item

    async def create_twice(body: dict[str, object]) -> object:
        await create(body)
        return await create(body)  # the "retry": 409

    monkeypatch.setattr(store.containers.events, "create_item", create_twice)
    await store.append(events, 0)
    assert [e.id for e in await read_stream(store, keys)] == [e.id for e in events]
    with pytest.raises(ConcurrencyError):  # someone else's commit still conflicts
        await store.append(stored_events(keys, 1, 2), 0)


async def test_racing_snapshot_saves_keep_the_newest(store: CosmosEventStore) -> None:
    snapshots = store.snapshot_store()
    keys = PartitionKeys.generate("account")
    versions = list(range(1, 25))
    random.shuffle(versions)
    await asyncio.gather(*(snapshots.save(snapshot_at(keys, v)) for v in versions))
    stored = await snapshots.get(keys, "account")
    assert stored is not None and stored.version == 24


async def test_corrupt_snapshot_document_is_rejected(store: CosmosEventStore) -> None:
    from sekiban.errors import SnapshotRejectedError
    from sekiban.snapshot.types import RejectionReason

    snapshots = store.snapshot_store()
    keys = PartitionKeys.generate("account")
    await store.containers.snapshots.create_item(
        {"id": "account", "pk": str(keys), "payload": "%%% not base64"}
    )
    with pytest.raises(SnapshotRejectedError) as error:
        await snapshots.get(keys, "account")
    assert error.value.rejection.reason is RejectionReason.CORRUPT
    assert await snapshots.save(snapshot_at(keys, 2))  # a corrupt entry is replaced
    stored = await snapshots.get(keys, "account")
    assert stored is not None and stored.version == 2


async def test_projector_names_cosmos_ids_forbid_are_stored(store: CosmosEventStore) -> None:
    snapshots: CosmosSnapshotStore = store.snapshot_store()
    keys = PartitionKeys.generate("account")
    snapshot = snapshot_at(keys, 4)
    odd = dataclasses.replace(
        snapshot, metadata=dataclasses.replace(snapshot.metadata, projector_name="a/b?c#d")
    )
    assert await snapshots.save(odd)
    assert await snapshots.get(keys, "a/b?c#d") == odd
    assert await snapshots.get(keys, "account") is None


# --- configuration and connection errors ---------------------------------------------


def full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


async def test_unreachable_server_is_a_connection_error_naming_the_endpoint() -> None:
    endpoint = f"https://127.0.0.1:{free_port()}/"
    with pytest.raises(StoreConnectionError) as error:
        await CosmosEventStore.open(endpoint=endpoint, key=KEY)
    assert not isinstance(error.value, StoreAuthenticationError)
    assert endpoint in str(error.value)
    assert KEY not in full_text(error.value)
    assert error.value.outcome_unknown is False  # nothing was sent


@pytest.fixture
async def proxied(store: CosmosEventStore) -> AsyncIterator[tuple[CosmosEventStore, FaultProxy]]:
    """A second store on `store`'s containers, reaching the server through a proxy."""
    endpoint = urlsplit(require_env("SEKIBAN_COSMOS_ENDPOINT"))
    async with fault_proxy(endpoint.hostname or "127.0.0.1", endpoint.port or 443) as proxy:
        other = await CosmosEventStore.open(
            endpoint=f"{endpoint.scheme}://127.0.0.1:{proxy.port}/",
            key=require_env("SEKIBAN_COSMOS_KEY"),
            container_prefix=store.containers.events.id.removesuffix("-events"),
            create=False,
            safe_window=timedelta(0),
            # The server advertises its own address: keep every request on the proxy.
            client_options={"enable_endpoint_discovery": False},
        )
        try:
            yield other, proxy
        finally:
            proxy.restore()
            await other.close()


async def test_reply_lost_after_the_append_was_sent_leaves_the_outcome_unknown(
    store: CosmosEventStore, proxied: tuple[CosmosEventStore, FaultProxy]
) -> None:
    other, proxy = proxied
    keys = PartitionKeys.generate()
    proxy.lose_reply()  # the create's answer is lost, and the SDK's retries find no server
    with pytest.raises(StoreConnectionError) as error:
        await other.append(stored_events(keys, 1, 2), 0)
    assert error.value.outcome_unknown is True
    assert proxy.replies_lost >= 1
    assert [e.version for e in await read_stream(store, keys)] == [1, 2]  # it had landed


async def test_cut_before_a_read_is_a_connection_error_with_a_known_outcome(
    proxied: tuple[CosmosEventStore, FaultProxy],
) -> None:
    other, proxy = proxied
    proxy.cut()
    with pytest.raises(StoreConnectionError) as error:
        await read_stream(other, PartitionKeys.generate())
    assert error.value.outcome_unknown is False


@pytest.fixture
async def refusing_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers every request the way Cosmos DB answers a wrong key; the
    local Cosmos server accepts any key, so it cannot show this. The test sets the status."""
    status = [401]

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response(
            {"code": "Unauthorized", "message": "The input authorization token can't serve"},
            status=status[0],
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", free_port())
    await site.start()
    try:
        yield site.name + "/", status
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_an_authentication_error_naming_the_endpoint(
    refusing_server: tuple[str, list[int]], status: int
) -> None:
    endpoint, answer = refusing_server
    answer[0] = status
    with pytest.raises(StoreAuthenticationError) as error:
        await CosmosEventStore.open(endpoint=endpoint, key=KEY)
    assert endpoint in str(error.value) and str(status) in str(error.value)
    assert KEY not in full_text(error.value)


async def test_key_that_is_not_base64_is_a_configuration_error() -> None:
    key = "not a key!"
    with pytest.raises(ConfigurationError) as error:
        await CosmosEventStore.open(endpoint="https://127.0.0.1:1/", key=key)
    assert key not in str(error.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [("database", "a/b"), ("container_prefix", ""), ("container_prefix", "-x"), ("database", "é")],
)
async def test_invalid_names_are_rejected_before_connecting(option: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        await CosmosEventStore.open(endpoint="https://127.0.0.1:1/", key=KEY, **{option: value})


async def test_missing_containers_without_create_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="create=True"):
        await CosmosEventStore.open(
            endpoint=require_env("SEKIBAN_COSMOS_ENDPOINT"),
            key=require_env("SEKIBAN_COSMOS_KEY"),
            container_prefix=f"missing-{uuid.uuid4().hex[:8]}",
            create=False,
        )


async def test_an_events_container_without_the_command_key_is_refused() -> None:
    """Made before command ids: Cosmos DB cannot add a unique key to a container."""
    from azure.cosmos import PartitionKey
    from azure.cosmos.aio import CosmosClient

    endpoint, key = require_env("SEKIBAN_COSMOS_ENDPOINT"), require_env("SEKIBAN_COSMOS_KEY")
    prefix = f"old-{uuid.uuid4().hex[:8]}"
    async with CosmosClient(endpoint, credential=key) as client:
        database = await client.create_database_if_not_exists("sekiban")
        for suffix in ("events", "snapshots"):
            await database.create_container(f"{prefix}-{suffix}", PartitionKey(path="/pk"))
        try:
            for create in (True, False):
                with pytest.raises(ConfigurationError, match="/command_key"):
                    await CosmosEventStore.open(
                        endpoint=endpoint, key=key, container_prefix=prefix, create=create
                    )
        finally:
            for suffix in ("events", "snapshots"):
                await database.delete_container(f"{prefix}-{suffix}")


def test_connection_string_gives_endpoint_and_key() -> None:
    assert parse_connection_string(
        f"AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey={KEY};"
    ) == (
        "https://acct.documents.azure.com:443/",
        KEY,
    )
    # Any case, any order, spaces, extra parts and no trailing ';'.
    assert parse_connection_string(f" accountkey={KEY} ; Foo=bar;ACCOUNTENDPOINT=https://h/") == (
        "https://h/",
        KEY,
    )


@pytest.mark.parametrize("text", ["", "AccountEndpoint=https://h/;", f"AccountKey={KEY};", "junk"])
def test_incomplete_connection_string_is_rejected_without_echoing_it(text: str) -> None:
    with pytest.raises(ConfigurationError, match="connection string") as error:
        parse_connection_string(text)
    assert KEY not in str(error.value)


async def test_store_connects_by_connection_string_and_by_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = require_env("SEKIBAN_COSMOS_ENDPOINT")
    key = require_env("SEKIBAN_COSMOS_KEY")
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    keys = PartitionKeys.generate()
    first = await CosmosEventStore.from_connection_string(
        f"AccountEndpoint={endpoint};AccountKey={key};", container_prefix=prefix
    )
    try:
        await first.append(stored_events(keys, 1, 1), 0)
    finally:
        await first.close()
    monkeypatch.delenv("SEKIBAN_COSMOS_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("SEKIBAN_COSMOS_DATABASE", "sekiban")
    second = await CosmosEventStore.from_env(container_prefix=prefix, create=False)
    try:
        assert len(await read_stream(second, keys)) == 1
    finally:
        await second.drop()
        await second.close()


async def test_from_env_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEKIBAN_COSMOS_CONNECTION_STRING", "SEKIBAN_COSMOS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEKIBAN_COSMOS_KEY", KEY)
    with pytest.raises(ConfigurationError, match="SEKIBAN_COSMOS_ENDPOINT"):
        await CosmosEventStore.from_env()
