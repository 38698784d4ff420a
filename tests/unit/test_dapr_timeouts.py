"""Saga timeouts as Dapr reminders, in process (`ReminderHarness`): one reminder per
timeout, fired by the process's timeout actor once, unregistered when fired or
cancelled. The real runtime is tested in tests/integration/test_dapr_saga_timeouts.py."""

from __future__ import annotations

import json

import pytest
from dapr.actor.id import ActorId

from examples.order_saga import (
    PAYMENT_WINDOW,
    AddStock,
    OrderFulfilment,
    OrderProjector,
    PlaceOrder,
    RecordPayment,
    order_domain,
    order_keys,
)
from sekiban import SekibanExecutor
from sekiban.dapr.timeouts import (
    TIMEOUT_ACTOR_TYPE,
    DaprTimeoutSubscriber,
    dapr_reaction_runner,
    reminder_name,
    timeout_actor_id,
)
from sekiban.errors import ConfigurationError
from sekiban.reactions import ReactionRunner
from sekiban.stores import InMemoryEventStore
from sekiban.testing import FakeClock
from sekiban.testing.actors import ReminderHarness

ORDER = "5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d10"


class Saga:
    """The order saga on a runner whose timeouts go to in-process reminders."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = InMemoryEventStore()
        self.executor = SekibanExecutor(order_domain(), self.store, clock=self.clock)
        self.process = OrderFulfilment()  # the one the timeout actors step
        self.harness = ReminderHarness(self.executor, [self.process], clock=self.clock)
        self.runner = self.restarted()

    def restarted(self) -> ReactionRunner:
        store = self.runner.store if hasattr(self, "runner") else None
        return dapr_reaction_runner(
            self.executor, OrderFulfilment(), reminders=self.harness, clock=self.clock, store=store
        )

    @property
    def subscriber(self) -> DaprTimeoutSubscriber:
        subscriber = self.runner.subscriptions["order-fulfilment"].subscriber
        assert isinstance(subscriber, DaprTimeoutSubscriber)
        return subscriber

    async def place_order(self) -> None:
        await self.executor.command(AddStock(sku="tea", quantity=5))
        await self.executor.command(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
        await self.runner.run_until_idle()

    async def count(self, event_type: str) -> int:
        n = 0
        async for batch in self.store.read_all(0, 1000):
            n += sum(e.event_type == event_type for e in batch)
        return n

    async def order_status(self) -> str:
        order = await self.executor.load_aggregate(OrderProjector, order_keys(ORDER))
        return order.payload.status  # type: ignore[attr-defined,no-any-return]


async def test_each_scheduled_timeout_becomes_one_reminder_named_after_its_id() -> None:
    s = Saga()
    await s.place_order()
    [timeout] = s.subscriber.reminded.values()
    actor_id = timeout_actor_id("order-fulfilment", timeout["stream"])
    assert s.harness.registered == [(actor_id, reminder_name(timeout["timeout_id"]))]
    key = (TIMEOUT_ACTOR_TYPE, actor_id, reminder_name(timeout["timeout_id"]))
    assert s.harness.due_at[key] == s.clock() + PAYMENT_WINDOW
    body = json.loads(s.harness.actor_client.reminders[key])
    assert body["period"] == "0h0m30s0ms0μs"  # fires again until unregistered

    await s.runner.run_until_idle()
    restarted = s.restarted()  # from the checkpoint: nothing registered twice
    await restarted.run_until_idle()
    assert len(s.harness.registered) == 1


async def test_the_runner_does_not_fire_timeouts_dapr_fires_them() -> None:
    s = Saga()
    await s.place_order()
    s.clock.advance(PAYMENT_WINDOW * 2)
    await s.runner.run_until_idle()
    assert await s.count("TimeoutFired") == 0

    assert await s.harness.fire_due() == 1
    assert await s.count("TimeoutFired") == 1
    assert await s.order_status() == "cancelled"
    assert s.harness.registered == []  # the actor unregistered it


async def test_a_reminder_fired_twice_applies_the_timeout_step_once() -> None:
    s = Saga()
    await s.place_order()
    [(actor_id, name)] = s.harness.registered
    [body] = s.harness.actor_client.reminders.values()
    s.clock.advance(PAYMENT_WINDOW)
    await s.harness.fire_due()
    # daprd delivers it again (e.g. the unregister was lost with the instance).
    await s.harness.manager.fire_reminder(ActorId(actor_id), name, body)
    assert await s.count("TimeoutFired") == 1
    assert await s.count("StockReleased") == 1
    assert await s.count("OrderCancelled") == 1

    await s.runner.run_until_idle()  # the runner sees it fired and forgets it
    assert s.subscriber.reminded == {}
    assert s.runner.status()[0].parked == ()


async def test_a_cancelled_timeout_unregisters_its_reminder() -> None:
    s = Saga()
    await s.place_order()
    await s.executor.command(RecordPayment(order_id=ORDER, succeeded=True))
    await s.runner.run_until_idle()
    assert s.harness.registered == []
    assert s.subscriber.reminded == {}
    s.clock.advance(PAYMENT_WINDOW * 2)
    assert await s.harness.fire_due() == 0
    assert await s.order_status() == "confirmed"


async def test_a_failed_registration_is_retried_then_parked_like_other_due_work() -> None:
    s = Saga()

    class Down:
        async def register(self, *args: object) -> None:
            raise OSError("no sidecar")

        async def unregister(self, *args: object) -> None:
            raise OSError("no sidecar")

    async def no_sleep(_: float) -> None:
        return None

    s.runner = dapr_reaction_runner(
        s.executor, OrderFulfilment(), reminders=Down(), clock=s.clock, sleep=no_sleep
    )
    await s.place_order()
    [parked] = s.runner.status()[0].parked
    assert parked.label.startswith("remind ") and "no sidecar" in parked.error
    assert s.subscriber.reminded == {}


async def test_a_reminder_for_another_stream_is_dropped_not_fired() -> None:
    s = Saga()
    await s.place_order()
    [(_, name)] = s.harness.registered
    [body] = s.harness.actor_client.reminders.values()
    other = timeout_actor_id("order-fulfilment", "default@order-fulfilment@" + "0" * 36)
    await s.harness.manager.fire_reminder(ActorId(other), name, body)
    assert await s.count("TimeoutFired") == 0
    s.clock.advance(PAYMENT_WINDOW)
    await s.harness.fire_due()
    assert await s.count("TimeoutFired") == 1


async def test_a_timeout_actor_for_an_unhosted_process_is_refused() -> None:
    s = Saga()
    await s.place_order()
    [body] = s.harness.actor_client.reminders.values()
    with pytest.raises(ConfigurationError, match="no process manager 'other'"):
        await s.harness.manager.fire_reminder(ActorId("other:x"), "timeout-x", body)


async def test_a_failed_timeout_step_keeps_its_reminder_and_the_next_firing_applies_it() -> None:
    s = Saga()
    await s.place_order()
    s.clock.advance(PAYMENT_WINDOW)
    process = s.process
    original = process.on_timeout

    def store_down(*args: object) -> None:
        raise OSError("the event store is down")

    process.on_timeout = store_down  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await s.harness.fire_due()
    assert len(s.harness.registered) == 1  # not unregistered: it fires again
    assert await s.count("TimeoutFired") == 0

    process.on_timeout = original  # type: ignore[method-assign]
    assert await s.harness.fire_due() == 1
    assert await s.count("TimeoutFired") == 1
    assert s.harness.registered == []
