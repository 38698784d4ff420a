"""Every event store and snapshot store the conformance suite runs against.

A backend is an async context manager yielding `(event_store, snapshot_store)` on
fresh, empty storage. Backends needing a server read its address from the environment
and are skipped without it, unless SEKIBAN_REQUIRE_SERVICES=1 (set by `make test`),
which turns a missing server into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from sekiban.stores import EventStore, InMemoryEventStore, InMemorySnapshotStore, SnapshotStore

Stores = tuple[EventStore, SnapshotStore]
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
    yield InMemoryEventStore(), InMemorySnapshotStore()


@asynccontextmanager
async def sqlite(tmp_path: Path) -> AsyncIterator[Stores]:
    from sekiban.stores.sqlite import SqliteEventStore

    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        yield store, store.snapshot_store()
    finally:
        await store.close()


@asynccontextmanager
async def postgres(tmp_path: Path) -> AsyncIterator[Stores]:
    from sekiban.stores.postgres import PostgresEventStore

    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = await PostgresEventStore.connect(dsn, schema=schema)
    try:
        yield store, store.snapshot_store()
    finally:
        try:
            await store.drop_schema()
        finally:
            await store.close()


@asynccontextmanager
async def cosmos(tmp_path: Path) -> AsyncIterator[Stores]:
    from sekiban.stores.cosmos import CosmosEventStore

    # No safe window: the suite appends and then reads at once, one writer at a time,
    # so nothing can be in flight. The window itself is tested in
    # tests/integration/test_cosmos_global_order.py.
    store = await CosmosEventStore.connect(
        endpoint=require_env("SEKIBAN_COSMOS_ENDPOINT"),
        key=require_env("SEKIBAN_COSMOS_KEY"),
        container_prefix=f"t-{uuid.uuid4().hex[:12]}",
        safe_window=timedelta(0),
    )
    try:
        yield store, store.snapshot_store()
    finally:
        try:
            await store.drop()
        finally:
            await store.close()


BACKENDS: dict[str, Backend] = {
    "memory": memory,
    "sqlite": sqlite,
    "postgres": postgres,
    "cosmos": cosmos,
}
