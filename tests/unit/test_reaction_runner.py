"""`ReactionRunner` on the shared `SubscriptionRunner`: it follows appends until stopped,
wakes on an append notification, retries a store fault instead of parking, fires
timeouts on the injected clock, and writes nothing in an idle round."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from examples.bank import AccountProjector, OpenAccount
from examples.order_saga import (
    PAYMENT_WINDOW,
    AddStock,
    OrderFulfilment,
    OrderProjector,
    PlaceOrder,
    order_domain,
    order_keys,
)
from sekiban import Command, CommandResponse, EventMetadata, SekibanExecutor, StoreConnectionError
from sekiban.projections import InMemoryProjectionStore, ProjectionRecord
from sekiban.reactions import ReactionRunner
from sekiban.stores import InMemoryEventStore
from sekiban.testing import FakeClock
from tests.unit.test_reactions import WelcomeBonus, deposits, domain

FAST = {"poll_interval": timedelta(milliseconds=5), "max_backoff": timedelta(milliseconds=50)}
NEVER_POLLS = {"poll_interval": timedelta(hours=1), "max_backoff": timedelta(hours=1)}
ORDER = "5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d10"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


class CountingStore(InMemoryProjectionStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save(self, record: ProjectionRecord) -> bool:
        self.saves += 1
        return await super().save(record)


async def test_an_idle_round_writes_no_checkpoint() -> None:
    executor = SekibanExecutor(domain())
    store = CountingStore()
    runner = ReactionRunner(executor, WelcomeBonus(), store=store)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    saves = store.saves
    assert saves >= 1
    assert await runner.run_once() == 0
    assert store.saves == saves


async def test_run_follows_appends_until_stopped_and_saves_at_the_head() -> None:
    executor = SekibanExecutor(domain())
    store = InMemoryProjectionStore()
    runner = ReactionRunner(executor, WelcomeBonus(), store=store, **FAST)
    task = asyncio.create_task(runner.run())
    for owner in ("alice", "bob"):
        await executor.command(OpenAccount(owner=owner))

    async def read_its_own_bonuses() -> bool:
        return runner.status()[0].position == 4  # two openings, two bonuses

    await eventually(read_its_own_bonuses)
    runner.stop()
    await task
    assert len(await deposits(executor)) == 2
    record = await store.get("reaction:welcome-bonus")
    assert record is not None and record.position == 4


class NotifyingStore(InMemoryEventStore):
    """An in-memory store that is an `EventNotifier`, as PostgreSQL is."""

    def __init__(self) -> None:
        super().__init__()
        self.appended = asyncio.Event()

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().append(*args, **kwargs)
        self.appended.set()
        return result

    async def wait_for_append(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.appended.wait()
        except TimeoutError:
            return False
        self.appended.clear()
        return True


async def test_an_append_notification_wakes_a_runner_that_never_polls() -> None:
    executor = SekibanExecutor(domain(), NotifyingStore())
    runner = ReactionRunner(executor, WelcomeBonus(), **NEVER_POLLS)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(0.05)  # idle now, waiting an hour unless notified
    await executor.command(OpenAccount(owner="alice"))

    async def bonus_paid() -> bool:
        return len(await deposits(executor)) == 1

    await eventually(bonus_paid)
    runner.stop()
    await task


class LosesReplies(SekibanExecutor):
    """Applies a deposit, then raises as if the reply was lost, `lose` times: more than
    a handler's retries, so an event whose store fault counted as its handler's would
    be parked."""

    lose = 6

    async def command(
        self,
        command: Command,
        metadata: EventMetadata | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandResponse:
        response = await super().command(command, metadata, command_id=command_id)
        if type(command).__name__ == "DepositMoney" and self.lose:
            self.lose -= 1
            raise StoreConnectionError("reply lost", outcome_unknown=True)
        return response


async def test_a_store_fault_is_retried_with_backoff_not_parked_and_applies_once() -> None:
    executor = LosesReplies(domain())
    runner = ReactionRunner(executor, WelcomeBonus(), **FAST)
    opened = await executor.command(OpenAccount(owner="alice"))
    task = asyncio.create_task(runner.run())

    async def recovered() -> bool:
        return executor.lose == 0 and runner.status()[0].last_error is None

    await eventually(recovered)
    runner.stop()
    await task
    [status] = runner.status()
    assert status.parked == ()
    account = await executor.load_aggregate(AccountProjector, opened.partition_keys)
    assert (account.version, account.payload.balance) == (2, 10)  # type: ignore[attr-defined]


async def test_a_running_runner_fires_a_timeout_when_the_injected_clock_passes_it() -> None:
    clock = FakeClock()
    executor = SekibanExecutor(order_domain(), clock=clock)
    runner = ReactionRunner(executor, OrderFulfilment(), clock=clock, **FAST)
    task = asyncio.create_task(runner.run())
    await executor.command(AddStock(sku="tea", quantity=5))
    await executor.command(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))

    async def timeout_pending() -> bool:
        return bool(runner.status()[0].state["timeouts"])

    await eventually(timeout_pending)
    clock.advance(PAYMENT_WINDOW)

    async def cancelled() -> bool:
        order = await executor.load_aggregate(OrderProjector, order_keys(ORDER))
        return order.payload.status == "cancelled"  # type: ignore[attr-defined,no-any-return]

    await eventually(cancelled)
    runner.stop()
    await task


class Unreadable(CountingStore):
    """A checkpoint store whose reads fail, as while its server is away."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, name: str) -> ProjectionRecord | None:
        self.reads += 1
        raise StoreConnectionError("checkpoint store away")


async def test_a_runner_that_never_read_its_checkpoint_writes_none_when_stopped() -> None:
    store = Unreadable()
    runner = ReactionRunner(SekibanExecutor(domain()), WelcomeBonus(), store=store, **FAST)
    task = asyncio.create_task(runner.run())

    async def retried() -> bool:
        return store.reads >= 3

    await eventually(retried)
    assert "checkpoint store away" in (runner.status()[0].last_error or "")
    runner.stop()
    await task
    assert store.saves == 0  # an empty checkpoint would replace the unread one


async def test_with_leases_one_of_two_runners_reacts_and_the_other_takes_over() -> None:
    executor = SekibanExecutor(domain())
    events = executor.event_store
    assert isinstance(events, InMemoryEventStore)
    store = InMemoryProjectionStore()
    standby = {"leases": events, "standby_interval": timedelta(milliseconds=20)}
    first = ReactionRunner(executor, WelcomeBonus(), store=store, **FAST, **standby)
    second = ReactionRunner(executor, WelcomeBonus(), store=store, **FAST, **standby)
    running = asyncio.create_task(first.run())
    await eventually(lambda: _now(first.standing_by == []))
    waiting = asyncio.create_task(second.run())
    await eventually(lambda: _now(second.standing_by == ["welcome-bonus"]))

    await executor.command(OpenAccount(owner="alice"))
    await eventually(lambda: _now(first.status()[0].position == 2))
    first.stop()  # saves its checkpoint and lets the lease go
    await running
    await eventually(lambda: _now(second.standing_by == []))
    await executor.command(OpenAccount(owner="bob"))
    await eventually(lambda: _now(second.status()[0].position == 4))
    second.stop()
    await waiting
    # One bonus per opening: the second runner started from the first one's checkpoint.
    assert len(await deposits(executor)) == 2


async def _now(value: bool) -> bool:
    return value
