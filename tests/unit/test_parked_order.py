"""Parked events keep order per sequence key: while an event of a key is parked, later
events of that key are held behind it, in order, and released in order when it is
retried; other keys keep flowing. Retries are asked for directly or through a
`RequestParkedRetry` command that a running runner reads from the store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.bank import AccountOpened, DepositMoney, MoneyDeposited, OpenAccount
from examples.order_saga import (
    PAYMENT_WINDOW,
    AddStock,
    Fulfilment,
    OrderFulfilment,
    OrderProjector,
    PaymentSucceeded,
    PlaceOrder,
    RecordPayment,
    StockProjector,
    order_domain,
    order_keys,
    stock_keys,
)
from sekiban import Event, EventPayload, SekibanExecutor, StoreConnectionError
from sekiban.projections import InMemoryProjectionStore
from sekiban.reactions import Reaction, ReactionRunner, RequestParkedRetry, Step
from sekiban.retry import RetryPolicy
from sekiban.testing import FakeClock
from tests.unit.test_reactions import domain

ONCE = RetryPolicy.never()
ORDER = "5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d10"


class Ledger(Reaction):
    """Records (owner, amount) per event in order; fails on the amounts in `failing`."""

    event_types = (AccountOpened, MoneyDeposited)

    def __init__(self) -> None:
        self.failing: set[int] = set()
        self.owners: dict[uuid.UUID, str] = {}
        self.seen: list[tuple[str, int]] = []

    def react(self, event: Event[EventPayload]) -> None:
        account = event.partition_keys.aggregate_id
        if isinstance(event.payload, AccountOpened):
            self.owners[account] = event.payload.owner
            self.seen.append((event.payload.owner, 0))
            return
        amount = event.payload.amount  # type: ignore[attr-defined]
        if amount in self.failing:
            raise RuntimeError(f"cannot book {amount}")
        self.seen.append((self.owners[account], amount))


async def history(executor: SekibanExecutor) -> None:
    """ann opens, deposits 1, 2; bob opens, deposits 10; ann deposits 3."""
    ann = (await executor.command(OpenAccount(owner="ann"))).partition_keys.aggregate_id
    await executor.command(DepositMoney(account_id=ann, amount=1))
    await executor.command(DepositMoney(account_id=ann, amount=2))
    bob = (await executor.command(OpenAccount(owner="bob"))).partition_keys.aggregate_id
    await executor.command(DepositMoney(account_id=bob, amount=10))
    await executor.command(DepositMoney(account_id=ann, amount=3))


async def parked_ledger(
    failing: set[int], store: InMemoryProjectionStore | None = None
) -> tuple[SekibanExecutor, ReactionRunner, Ledger]:
    executor = SekibanExecutor(domain())
    ledger = Ledger()
    ledger.failing = set(failing)
    runner = ReactionRunner(executor, ledger, retry=ONCE, store=store)
    await history(executor)
    await runner.run_until_idle()
    return executor, runner, ledger


async def test_later_events_of_a_parked_key_are_held_behind_it_while_other_keys_flow() -> None:
    _, runner, ledger = await parked_ledger({1})
    assert ledger.seen == [("ann", 0), ("bob", 0), ("bob", 10)]
    [status] = runner.status()
    head, *held = status.parked
    assert (head.event_type, head.error, head.attempts) == (
        "MoneyDeposited",
        "RuntimeError: cannot book 1",
        1,
    )
    assert [h.held_behind for h in held] == [head.event_id, head.event_id]
    assert [h.position for h in held] == sorted(h.position for h in held)
    assert all(h.key == head.key and not h.error for h in held)
    assert status.position == 6


async def test_a_retried_head_releases_the_held_events_in_order() -> None:
    _, runner, ledger = await parked_ledger({1})
    ledger.failing.clear()
    assert await runner.retry_parked("ledger") == 3
    assert ledger.seen[3:] == [("ann", 1), ("ann", 2), ("ann", 3)]
    assert runner.status()[0].parked == ()


async def test_a_held_event_that_fails_when_released_becomes_the_head() -> None:
    _, runner, ledger = await parked_ledger({1, 2})
    ledger.failing = {2}
    assert await runner.retry_parked("ledger") == 1
    head, held = runner.status()[0].parked
    assert head.error == "RuntimeError: cannot book 2" and not head.held
    assert held.held_behind == head.event_id
    ledger.failing.clear()
    assert await runner.retry_parked("ledger") == 2
    assert ledger.seen[3:] == [("ann", 1), ("ann", 2), ("ann", 3)]


async def test_naming_a_held_event_retries_its_head_first() -> None:
    _, runner, ledger = await parked_ledger({1})
    ledger.failing.clear()
    held = runner.status()[0].parked[-1]
    assert await runner.retry_parked("ledger", [held.event_id]) == 3
    assert ledger.seen[3:] == [("ann", 1), ("ann", 2), ("ann", 3)]


async def test_a_later_event_of_a_held_key_waits_even_after_the_handler_is_fixed() -> None:
    executor, runner, ledger = await parked_ledger({1})
    ledger.failing.clear()
    account = next(k for k, v in ledger.owners.items() if v == "ann")
    await executor.command(DepositMoney(account_id=account, amount=4))
    await runner.run_until_idle()
    assert [p.event_type for p in runner.status()[0].parked] == ["MoneyDeposited"] * 4
    assert ("ann", 4) not in ledger.seen
    assert await runner.retry_parked("ledger") == 4
    assert ledger.seen[3:] == [("ann", 1), ("ann", 2), ("ann", 3), ("ann", 4)]


async def test_held_events_survive_a_restart() -> None:
    store = InMemoryProjectionStore()
    executor, runner, _ = await parked_ledger({1}, store)
    restarted_ledger = Ledger()
    restarted = ReactionRunner(executor, restarted_ledger, store=store)
    await restarted.start()
    assert restarted.status()[0].parked == runner.status()[0].parked
    restarted_ledger.owners = ledger_owners(runner)  # learnt from the openings
    assert await restarted.retry_parked("ledger") == 3


def ledger_owners(runner: ReactionRunner) -> dict[uuid.UUID, str]:
    subscriber = runner.subscriptions["ledger"].subscriber
    return subscriber.reaction.owners  # type: ignore[attr-defined,no-any-return]


async def test_a_retry_request_in_the_store_is_acted_on_by_the_runner_it_names() -> None:
    executor, runner, ledger = await parked_ledger({1})
    ledger.failing.clear()
    await executor.command(RequestParkedRetry(reaction="someone-else"))
    await runner.run_until_idle()
    assert len(runner.status()[0].parked) == 3
    await executor.command(RequestParkedRetry(reaction="ledger"))
    await runner.run_until_idle()
    assert runner.status()[0].parked == ()
    assert ledger.seen[3:] == [("ann", 1), ("ann", 2), ("ann", 3)]


class PaymentTrouble(OrderFulfilment):
    """The example saga, unable to handle a payment while `broken`."""

    name = "order-fulfilment"
    broken = True

    def handle(self, state: Fulfilment, event: Event[EventPayload], now: datetime) -> Step | None:
        if self.broken and isinstance(event.payload, PaymentSucceeded):
            raise ConnectionError("ledger unavailable")
        return super().handle(state, event, now)


async def test_a_timeout_waits_while_an_earlier_event_of_its_process_is_parked() -> None:
    clock = FakeClock()
    executor = SekibanExecutor(order_domain(), clock=clock)
    process = PaymentTrouble()
    runner = ReactionRunner(executor, process, retry=ONCE, clock=clock)
    await executor.command(AddStock(sku="tea", quantity=5))
    await executor.command(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    await runner.run_until_idle()
    await executor.command(RecordPayment(order_id=ORDER, succeeded=True))
    await runner.run_until_idle()
    [parked] = runner.status()[0].parked
    assert parked.event_type == "PaymentSucceeded"

    clock.advance(PAYMENT_WINDOW + timedelta(minutes=1))
    await runner.run_until_idle()
    order = await executor.load_aggregate(OrderProjector, order_keys(ORDER))
    assert order.payload.status == "placed"  # type: ignore[attr-defined]  # not cancelled

    process.broken = False
    assert await runner.retry_parked("order-fulfilment") == 1
    await runner.run_until_idle()
    order = await executor.load_aggregate(OrderProjector, order_keys(ORDER))
    assert order.payload.status == "confirmed"  # type: ignore[attr-defined]


class CannotCorrelate(OrderFulfilment):
    """The example saga, whose `correlate` raises on payments."""

    name = "order-fulfilment"

    def correlate(self, event: Event[EventPayload]) -> str | None:
        if isinstance(event.payload, PaymentSucceeded):
            raise KeyError("order id")
        return super().correlate(event)


async def test_an_event_whose_key_cannot_be_found_is_parked_and_the_rest_flows() -> None:
    executor = SekibanExecutor(order_domain())
    runner = ReactionRunner(executor, CannotCorrelate(), retry=ONCE)
    await executor.command(AddStock(sku="tea", quantity=5))
    await executor.command(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    await executor.command(RecordPayment(order_id=ORDER, succeeded=True))
    other = "5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d11"
    await executor.command(PlaceOrder(order_id=other, sku="tea", quantity=1, amount=4))
    await runner.run_until_idle()
    [parked] = runner.status()[0].parked
    assert (parked.event_type, parked.key) == ("PaymentSucceeded", None)
    assert "KeyError" in parked.error
    stock = await executor.load_aggregate(StockProjector, stock_keys("tea"))
    assert set(stock.payload.reserved) == {ORDER, other}  # type: ignore[attr-defined]
    assert runner.status()[0].position == await head_position(executor)


async def head_position(executor: SekibanExecutor) -> int:
    return [s.position async for b in executor.event_store.read_all() for s in b][-1] or 0


class StoreAwayOnce(Ledger):
    """The ledger, hit by a store fault on the deposit of `away_on`, once."""

    name = "ledger"
    away_on = 2

    def react(self, event: Event[EventPayload]) -> None:
        if getattr(event.payload, "amount", None) == self.away_on:
            self.away_on = 0
            raise StoreConnectionError("the store went away")
        super().react(event)


async def test_a_store_fault_during_a_retry_keeps_what_was_not_released_in_order() -> None:
    executor = SekibanExecutor(domain())
    ledger = StoreAwayOnce()
    ledger.failing = {1}
    runner = ReactionRunner(executor, ledger, retry=ONCE)
    await history(executor)
    await runner.run_until_idle()
    ledger.failing.clear()
    with pytest.raises(StoreConnectionError):
        await runner.retry_parked("ledger")
    head, held = runner.status()[0].parked
    assert (head.position, head.held, head.error) == (3, False, "retry interrupted")
    assert held.held_behind == head.event_id
    assert await runner.retry_parked("ledger") == 2
    assert ledger.seen[3:] == [("ann", 1), ("ann", 2), ("ann", 3)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=12),
    st.booleans(),
)
def test_every_key_is_handled_in_its_own_order_whatever_fails(
    deposits: list[tuple[int, bool]], fix_before_retry: bool
) -> None:
    """Deposits to three accounts, some failing once parked: in the first pass an
    account is handled up to its first failure; after the retries every account's
    deposits were handled exactly once each, in the order they were made."""

    async def scenario() -> None:
        executor = SekibanExecutor(domain())
        ledger = Ledger()
        runner = ReactionRunner(executor, ledger, retry=ONCE)
        accounts = [
            (await executor.command(OpenAccount(owner=f"o{n}"))).partition_keys.aggregate_id
            for n in range(3)
        ]
        for amount, (n, fails) in enumerate(deposits, start=1):
            if fails:
                ledger.failing.add(amount)
            await executor.command(DepositMoney(account_id=accounts[n], amount=amount))
        await runner.run_until_idle()
        for n in range(3):
            mine = [a for a, (k, _) in enumerate(deposits, start=1) if k == n]
            first_failure = next((a for a in mine if a in ledger.failing), None)
            expected = mine if first_failure is None else mine[: mine.index(first_failure)]
            assert [a for o, a in ledger.seen if o == f"o{n}" and a] == expected
        if fix_before_retry:
            ledger.failing.clear()
        else:
            ledger.failing = set(list(ledger.failing)[::2])  # some fail once more
            await runner.retry_parked("ledger")
            ledger.failing.clear()
        await runner.retry_parked("ledger")
        assert runner.status()[0].parked == ()
        for n in range(3):
            mine = [a for a, (k, _) in enumerate(deposits, start=1) if k == n]
            assert [a for o, a in ledger.seen if o == f"o{n}" and a] == mine

    asyncio.run(scenario())
