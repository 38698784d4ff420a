"""Every event store and snapshot store the conformance suite runs against.

A backend is an async context manager yielding `Stores` (event store, snapshot store)
on fresh, empty storage, opened by URL with `open_store`, as users open them. Backends
needing a server read its address from the environment and are skipped without it,
unless SEKIBAN_REQUIRE_SERVICES=1 (set by `make test`), which turns a missing server
into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sekiban.stores import Stores, open_store, with_query

__all__ = ["BACKENDS", "Stores", "cosmos_url", "postgres_url", "require_env"]

Backend = Callable[[Path], AbstractAsyncContextManager[Stores]]


def require_env(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if os.environ.get("SEKIBAN_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is not set but SEKIBAN_REQUIRE_SERVICES=1")
    pytest.skip(f"{name} is not set")


@asynccontextmanager
async def memory(tmp_path: Path) -> AsyncIterator[Stores]:
    async with await open_store("memory://") as stores:
        yield stores


@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Stores]:
    async with await open_store(f"sqlite:///{tmp_path / 'events.db'}") as stores:
        yield stores


def postgres_url() -> str:
    """A store URL on the test server, in a schema of its own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    return with_query(require_env("SEKIBAN_POSTGRES_DSN"), schema=schema)


@asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[Stores]:
    from sekiban.stores.postgres import PostgresEventStore

    async with await open_store(postgres_url()) as stores:
        try:
            yield stores
        finally:
            assert isinstance(stores.events, PostgresEventStore)
            await stores.events.drop_schema()


def cosmos_url() -> str:
    """A store URL on the test server, with containers of its own; the key stays in
    SEKIBAN_COSMOS_KEY."""
    require_env("SEKIBAN_COSMOS_KEY")
    endpoint = urlsplit(require_env("SEKIBAN_COSMOS_ENDPOINT"))
    scheme = "cosmos" if endpoint.scheme == "https" else "cosmos+http"
    # No safe window: the suite appends and then reads at once, one writer at a time,
    # so nothing can be in flight. The window itself is tested in
    # tests/integration/test_cosmos_global_order.py.
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    return f"{scheme}://{endpoint.netloc}/sekiban?container_prefix={prefix}&safe_window_seconds=0"


@asynccontextmanager
async def cosmos(tmp_path: Path) -> AsyncIterator[Stores]:
    from sekiban.stores.cosmos import CosmosEventStore

    async with await open_store(cosmos_url()) as stores:
        try:
            yield stores
        finally:
            assert isinstance(stores.events, CosmosEventStore)
            await stores.events.drop()


BACKENDS: dict[str, Backend] = {
    "memory": memory,
    "sqlite": sqlite,
    "postgres": postgres,
    "cosmos": cosmos,
}
