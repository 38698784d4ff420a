"""A Dapr cluster on loopback for integration tests: placement, hosts, sidecars."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from sekiban.errors import SidecarError
from sekiban.stores import with_query
from sekiban.stores.postgres import PostgresEventStore
from sekiban.testing.sidecar import DaprCluster, find_binaries, postgres_actor_state_component
from tests.conformance.backends import require_env


def dapr_binaries() -> Path:
    try:
        return find_binaries()
    except SidecarError as error:
        if os.environ.get("SEKIBAN_REQUIRE_SERVICES") == "1":
            pytest.fail(str(error))
        pytest.skip(str(error))


@dataclass
class BankCluster:
    """A running cluster, its event store, and where daprd keeps the actor state."""

    cluster: DaprCluster
    store: PostgresEventStore
    dsn: str
    state_table: str  # schema-qualified


@asynccontextmanager
async def bank_cluster(
    tmp_path: Path,
    snapshot_count: int = 10,
    idle_seconds: int = 900,
    extra_env: dict[str, str] | None = None,
    app_target: str = "examples.dapr_host:app",
) -> AsyncIterator[BankCluster]:
    """A cluster hosting the bank domain, with a schema of its own.

    The event store and daprd's actor-state tables share that schema, created before
    any process starts (daprd does not create schemas) and dropped afterwards, so a
    test run leaves no tables behind.
    """
    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    schema = f"dapr_{uuid.uuid4().hex[:10]}"
    store = await PostgresEventStore.open(dsn, schema=schema)
    state_table = f"{schema}.actor_state"
    component = postgres_actor_state_component("actorstate", dsn, state_table)
    env = {
        "SEKIBAN_STORE_URL": with_query(dsn, schema=schema),
        "SEKIBAN_SNAPSHOT_COUNT": str(snapshot_count),
        "SEKIBAN_ACTOR_IDLE_TIMEOUT": str(idle_seconds),
        **(extra_env or {}),
    }
    try:
        with DaprCluster(
            tmp_path, app_target, component, app_env=env, binaries=dapr_binaries()
        ) as cluster:
            yield BankCluster(cluster, store, dsn, state_table)
    finally:
        await store.drop_schema()
        await store.close()


async def active_actor_count(endpoint: str, actor_type: str = "DaprAggregateActor") -> int:
    """How many actors of `actor_type` the sidecar at `endpoint` has active."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client,
        client.get(f"{endpoint}/v1.0/metadata") as response,
    ):
        metadata = await response.json()
    actors = metadata.get("actorRuntime", {}).get("activeActors") or metadata.get("actors") or []
    return sum(a.get("count", 0) for a in actors if a.get("type") == actor_type)
