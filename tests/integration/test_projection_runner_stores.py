"""The projection runner on every store: concurrent writers, projector errors, poison
events; on PostgreSQL, commits out of position order, LISTEN/NOTIFY wake-ups and a
killed connection.

Each projection here records the ids of the events it applied (`AppliedEvents`), so
"nothing skipped, nothing twice, order held" is one comparison with a full replay.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from sekiban import PartitionKeys, StoreConnectionError
from sekiban.projections import ProjectionOptions, ProjectionRunner, Projections
from sekiban.stores import Stores, open_store, with_query
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import BACKENDS, require_env
from tests.integration.test_postgres_global_order import hold_appends_to, wait_until_blocked
from tests.runner_domain import (
    GROUP,
    OTHER_GROUP,
    AppliedEvents,
    Picky,
    all_ids,
    append_deposits,
    deposits,
    domain,
)
from tests.support import stored_events

FAST = {"poll_interval": timedelta(milliseconds=10), "max_backoff": timedelta(milliseconds=200)}
COSMOS_SAFE_WINDOW = 0.5
"""Seconds: a Cosmos DB commit slower than this could be passed by (the store's
documented limit); the test server's creates take milliseconds."""


@asynccontextmanager
async def cosmos_with_window(tmp_path: Path) -> AsyncIterator[Stores]:
    from sekiban.stores.cosmos import CosmosEventStore

    require_env("SEKIBAN_COSMOS_KEY")
    endpoint = urlsplit(require_env("SEKIBAN_COSMOS_ENDPOINT"))
    scheme = "cosmos" if endpoint.scheme == "https" else "cosmos+http"
    url = (
        f"{scheme}://{endpoint.netloc}/sekiban?container_prefix=t-{uuid.uuid4().hex[:12]}"
        f"&safe_window_seconds={COSMOS_SAFE_WINDOW}"
    )
    async with await open_store(url) as stores:
        try:
            yield stores
        finally:
            assert isinstance(stores.events, CosmosEventStore)
            await stores.events.drop()


RUNNER_BACKENDS = {**BACKENDS, "cosmos": cosmos_with_window}


@pytest.fixture(params=sorted(RUNNER_BACKENDS))
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    async with RUNNER_BACKENDS[request.param](tmp_path) as opened:
        yield opened


@pytest.fixture(autouse=True)
def _no_failure() -> Any:
    yield
    Picky.fail_on = None


async def eventually(check: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


@asynccontextmanager
async def running(stores: Stores, *projectors: Any, **timing: Any) -> AsyncIterator[Any]:
    """A runner over `stores` in a task; stopped (and awaited) on exit."""
    manager = Projections(
        domain(), stores.events, stores.projections, options=ProjectionOptions(persist_every=7)
    )
    runner = ProjectionRunner(manager, list(projectors), **(timing or FAST))
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)


async def applied(runner: ProjectionRunner) -> list[str]:
    state: list[str] = (await runner.projections.projection(AppliedEvents)).state
    return state


async def caught_up(runner: ProjectionRunner, store: Any, count: int) -> None:
    """Wait until the runner applied `count` events, then check they are a full replay."""

    async def done() -> bool:
        return len(await applied(runner)) >= count

    await eventually(done)
    assert await applied(runner) == await all_ids(store)


async def test_concurrent_writers_nothing_skipped_nothing_twice_order_held(
    stores: Stores,
) -> None:
    async with running(stores, AppliedEvents) as runner:
        writers = [append_deposits(stores.events, 4, 6) for _ in range(5)]
        await asyncio.gather(*writers)
        await caught_up(runner, stores.events, 120)
    record = await stores.projections.get(AppliedEvents.name)
    assert record is not None and record.events_applied == 120


async def test_a_projector_error_mid_batch_stops_only_that_projection(stores: Stores) -> None:
    keys = PartitionKeys.generate(GROUP)
    await stores.events.append(deposits(keys, 1, [1, 2, 3, 9, 4, 5]), 0)
    Picky.fail_on = 9
    async with running(stores, AppliedEvents, Picky) as runner:
        await caught_up(runner, stores.events, 6)

        async def failing() -> bool:
            statuses = {s.name: s for s in await runner.status()}
            return "no amount 9" in (statuses[Picky.name].last_error or "")

        await eventually(failing)
        assert (await runner.projections.projection(Picky)).state == 6  # 1 + 2 + 3
        Picky.fail_on = None

        async def recovered() -> bool:
            return (await runner.projections.projection(Picky)).state == 24

        await eventually(recovered)  # and each event once: 24 is 1 + 2 + 3 + 9 + 4 + 5


async def test_a_poison_event_of_another_group_does_not_affect_the_projection(
    stores: Stores,
) -> None:
    await append_deposits(stores.events, 2, 2)
    poison = stored_events(PartitionKeys.generate(OTHER_GROUP), 1, 1, payload='{"amount":"x"}')
    await stores.events.append(poison, 0)
    await append_deposits(stores.events, 2, 2)
    async with running(stores, AppliedEvents) as runner:
        await caught_up(runner, stores.events, 8)
        (status,) = await runner.status()
        assert status.last_error is None


# -- PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
async def pg_stores(dsn: str, schema: str) -> AsyncIterator[Stores]:
    # The application name tells this test's connections (pool and listener) from
    # those of other tests sharing the server.
    url = with_query(dsn, application_name=schema)
    async with await open_store(url, schema=schema) as opened:
        try:
            yield opened
        finally:
            assert isinstance(opened.events, PostgresEventStore)
            await opened.events.drop_schema()


LONG = {"poll_interval": timedelta(hours=1), "max_backoff": timedelta(hours=1)}
"""A runner that never polls on its own: only a notification wakes it."""


@pytest.mark.postgres
async def test_commits_out_of_position_order_are_applied_in_position_order(
    pg_stores: Stores, admin: asyncpg.Connection, schema: str
) -> None:
    slow, fast = PartitionKeys.generate(GROUP), PartitionKeys.generate(GROUP)
    gate = await hold_appends_to(schema, admin, slow)
    async with running(pg_stores, AppliedEvents) as runner:
        held = asyncio.create_task(pg_stores.events.append(deposits(slow, 1, [1, 1]), 0))
        await wait_until_blocked(admin, gate)
        await pg_stores.events.append(deposits(fast, 1, [1]), 0)  # numbered after, committed first
        others = await append_deposits(pg_stores.events, 3, 2)
        await asyncio.sleep(0.3)  # the runner polls meanwhile: it must not pass the held append
        assert await applied(runner) == []
        await admin.execute("SELECT pg_advisory_unlock($1)", gate)
        await held
        await caught_up(runner, pg_stores.events, 9)
        ids = await applied(runner)
        assert ids[:2] == [e.id for e in await _stream(pg_stores, slow)]
        assert set(others) <= set(ids)


async def _stream(stores: Stores, keys: PartitionKeys) -> list[Any]:
    return [e async for batch in stores.events.read_stream(keys) for e in batch]


@pytest.mark.postgres
async def test_a_notification_wakes_a_runner_that_never_polls(pg_stores: Stores) -> None:
    async with running(pg_stores, AppliedEvents, **LONG) as runner:
        await append_deposits(pg_stores.events, 1, 1)
        await caught_up(runner, pg_stores.events, 1)
        # Idle now, waiting an hour unless notified.
        await append_deposits(pg_stores.events, 2, 1)
        await caught_up(runner, pg_stores.events, 3)


@pytest.mark.postgres
async def test_the_runner_survives_its_connections_being_killed(
    pg_stores: Stores, admin: asyncpg.Connection, schema: str
) -> None:
    async with running(pg_stores, AppliedEvents, **LONG) as runner:
        await append_deposits(pg_stores.events, 1, 2)
        await caught_up(runner, pg_stores.events, 2)
        for _ in range(2):  # the second kill hits the reconnected connections
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                schema,
            )
            assert killed >= 1
            await asyncio.sleep(random.uniform(0.05, 0.2))
            for _ in range(2):
                await _append_retrying(pg_stores)

        async def replayed() -> bool:
            ids = await applied(runner)
            return len(ids) >= 6 and ids == await all_ids(pg_stores.events)

        await eventually(replayed)


async def _append_retrying(stores: Stores) -> None:
    """Append one event to a new stream; the first use of a killed pool connection
    fails (and writes nothing that counts: each attempt is its own stream)."""
    for _ in range(5):
        try:
            await append_deposits(stores.events, 1, 1)
            return
        except StoreConnectionError:
            await asyncio.sleep(0.1)
    raise AssertionError("appends kept failing")
