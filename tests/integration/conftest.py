"""Fixtures shared by the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import require_env


@pytest.fixture
async def dsn() -> str:
    return require_env("SEKIBAN_POSTGRES_DSN")


@pytest.fixture
async def admin(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection outside the store's pool, for holding locks and transactions."""
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def store(dsn: str, schema: str) -> AsyncIterator[PostgresEventStore]:
    """A PostgreSQL event store in a fresh schema, dropped afterwards."""
    store = await PostgresEventStore.open(dsn, schema=schema)
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()
