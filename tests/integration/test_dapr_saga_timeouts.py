"""Saga timeouts as Dapr actor reminders, on the real runtime: placement, the
scheduler, daprd and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from examples.order_saga import AddStock, PlaceOrder, RecordPayment, order_domain
from sekiban import SekibanExecutor
from sekiban.dapr.reminders import DaprReminders
from sekiban.dapr.timeouts import (
    TIMEOUT_ACTOR_TYPE,
    DaprTimeoutSubscriber,
    dapr_reaction_runner,
    reminder_name,
    timeout_actor_id,
)
from sekiban.projections.store import InMemoryProjectionStore
from sekiban.reactions import ReactionRunner
from sekiban.stores import EventStore
from sekiban.testing.sidecar import Node
from tests.integration.dapr_support import bank_cluster
from tests.integration.saga_dapr_host import QuickFulfilment

pytestmark = pytest.mark.dapr

HOST = "tests.integration.saga_dapr_host:app"
WINDOW = timedelta(seconds=6)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 90) -> None:
    """Wait until `check()` holds; fail naming `what` after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {limit}s")
        await asyncio.sleep(0.2)


async def event_types(store: EventStore) -> list[str]:
    types: list[str] = []
    async for batch in store.read_all(0, 1000):
        types += [e.event_type for e in batch]
    return types


async def reminder_status(node: Node, actor_id: str, name: str) -> int:
    url = f"{node.http_endpoint}/v1.0/actors/{TIMEOUT_ACTOR_TYPE}/{actor_id}/reminders/{name}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


def runner_on(
    node: Node, executor: SekibanExecutor, store: InMemoryProjectionStore
) -> ReactionRunner:
    """A runner registering reminders through `node`'s daprd, its checkpoints in `store`."""
    return dapr_reaction_runner(
        executor,
        QuickFulfilment(WINDOW),
        reminders=DaprReminders(node.http_endpoint),
        retry_period=timedelta(seconds=2),
        store=store,
    )


async def test_a_timeout_fires_once_on_another_instance_after_sigkill(tmp_path: Path) -> None:
    async with bank_cluster(
        tmp_path,
        app_target=HOST,
        extra_env={"SAGA_PAYMENT_WINDOW": str(WINDOW.total_seconds())},
        scheduler=True,
    ) as saga:
        first = saga.cluster.start_node("saga")
        executor = SekibanExecutor(order_domain(), saga.store)
        order_id = str(uuid.uuid4())
        await executor.command(AddStock(sku="book", quantity=5))
        await executor.command(PlaceOrder(order_id=order_id, sku="book", quantity=1, amount=10))
        checkpoints = InMemoryProjectionStore()
        runner = runner_on(first, executor, checkpoints)
        await runner.run_until_idle()
        subscriber = runner.subscriptions["order-fulfilment"].subscriber
        assert isinstance(subscriber, DaprTimeoutSubscriber)
        [timeout] = subscriber.reminded.values()
        actor_id = timeout_actor_id("order-fulfilment", timeout["stream"])
        name = reminder_name(timeout["timeout_id"])
        assert await reminder_status(first, actor_id, name) == 200
        await runner.close()

        first.kill()  # SIGKILL, app and daprd, before the timeout is due
        assert "TimeoutFired" not in await event_types(saga.store)
        second = saga.cluster.start_node("saga")

        async def fired() -> bool:
            return "TimeoutFired" in await event_types(saga.store)

        await eventually(fired, "the timeout firing on the second instance")

        async def unregistered() -> bool:
            return await reminder_status(second, actor_id, name) == 404

        await eventually(unregistered, "the fired reminder being unregistered")
        # A restarted runner reads the fired timeout and forgets its reminder.
        runner = runner_on(second, executor, checkpoints)
        await runner.run_until_idle()
        assert runner.status()[0].parked == ()
        types = await event_types(saga.store)
        assert types.count("TimeoutScheduled") == 1
        assert types.count("TimeoutFired") == 1
        assert types.count("StockReleased") == 1
        assert types.count("OrderCancelled") == 1


async def test_a_reminder_survives_an_app_restart_and_a_cancelled_one_is_unregistered(
    tmp_path: Path,
) -> None:
    async with bank_cluster(
        tmp_path,
        app_target=HOST,
        extra_env={"SAGA_PAYMENT_WINDOW": str(WINDOW.total_seconds())},
        scheduler=True,
    ) as saga:
        node = saga.cluster.start_node("saga")
        executor = SekibanExecutor(order_domain(), saga.store)
        unpaid, paid = str(uuid.uuid4()), str(uuid.uuid4())
        await executor.command(AddStock(sku="book", quantity=5))
        for order_id in (unpaid, paid):
            await executor.command(PlaceOrder(order_id=order_id, sku="book", quantity=1, amount=9))
        runner = runner_on(node, executor, InMemoryProjectionStore())
        await runner.run_until_idle()
        subscriber = runner.subscriptions["order-fulfilment"].subscriber
        assert isinstance(subscriber, DaprTimeoutSubscriber)
        reminder_of = {
            t["stream"]: (
                timeout_actor_id("order-fulfilment", t["stream"]),
                reminder_name(t["timeout_id"]),
            )
            for t in subscriber.reminded.values()
        }
        paid_reminder = reminder_of[str(QuickFulfilment(WINDOW).keys(paid))]
        unpaid_reminder = reminder_of[str(QuickFulfilment(WINDOW).keys(unpaid))]
        assert await reminder_status(node, *paid_reminder) == 200

        await executor.command(RecordPayment(order_id=paid, succeeded=True))
        await runner.run_until_idle()  # the paid order's timeout is cancelled
        assert await reminder_status(node, *paid_reminder) == 404
        assert await reminder_status(node, *unpaid_reminder) == 200

        node.restart_app()  # SIGKILL the app only; daprd and the scheduler stay

        async def fired() -> bool:
            return "TimeoutFired" in await event_types(saga.store)

        await eventually(fired, "the unpaid order's timeout firing after the app restart")
        types = await event_types(saga.store)
        assert types.count("TimeoutScheduled") == 2
        assert types.count("TimeoutFired") == 1
        assert types.count("OrderConfirmed") == 1
        assert types.count("OrderCancelled") == 1
