"""The example saga (examples/order_saga.py), given/when/then with a fake clock."""

from __future__ import annotations

from datetime import timedelta

from examples.order_saga import (
    PAYMENT_WINDOW,
    AddStock,
    CancelOrder,
    ConfirmOrder,
    OrderFulfilment,
    OrderProjector,
    PlaceOrder,
    RecordPayment,
    ReleaseStock,
    ReserveStock,
    StockProjector,
    order_domain,
    order_keys,
    stock_keys,
)
from sekiban import SekibanExecutor
from sekiban.reactions import PendingEffect, ReactionRunner, SideEffect
from sekiban.retry import RetryPolicy
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import InMemorySnapshotStore
from sekiban.testing import ReactionScenario, RecordingExecutor

ORDER = "5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d10"


def scenario() -> ReactionScenario:
    return ReactionScenario(order_domain(), OrderFulfilment())


async def test_a_placed_order_reserves_stock_and_waits_for_payment() -> None:
    s = scenario()
    await s.given(AddStock(sku="tea", quantity=5))
    await s.when(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    assert s.commands()[0] == ReserveStock(sku="tea", order_id=ORDER, quantity=2)
    await s.then_side_effects(
        SideEffect(kind="request-payment", data={"order_id": ORDER, "amount": 8})
    )
    [(_name, due_at)] = s.then_timeouts("payment")
    assert due_at == s.clock() + PAYMENT_WINDOW


async def test_payment_confirms_the_order_and_cancels_the_timeout() -> None:
    s = scenario()
    await s.given(
        AddStock(sku="tea", quantity=5), PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8)
    )
    await s.when(RecordPayment(order_id=ORDER, succeeded=True))
    s.then_commands(ConfirmOrder(order_id=ORDER))
    s.then_timeouts()
    await s.advance(PAYMENT_WINDOW * 2)
    s.then_no_commands()
    order = await s.executor.load_aggregate(OrderProjector, order_keys(ORDER))
    assert order.payload.status == "confirmed"  # type: ignore[attr-defined]


async def test_no_payment_within_the_window_releases_stock_and_cancels() -> None:
    s = scenario()
    await s.given(
        AddStock(sku="tea", quantity=5), PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8)
    )
    await s.advance(PAYMENT_WINDOW - timedelta(seconds=1))
    s.then_no_commands()
    await s.advance(timedelta(seconds=1))
    s.then_commands(
        ReleaseStock(sku="tea", order_id=ORDER),
        CancelOrder(order_id=ORDER, reason="no payment within 15 minutes"),
    )
    s.then_timeouts()
    stock = await s.executor.load_aggregate(StockProjector, stock_keys("tea"))
    assert stock.payload.available == 5  # type: ignore[attr-defined]
    # A payment arriving after the process completed changes nothing.
    await s.when(RecordPayment(order_id=ORDER, succeeded=True))
    s.then_no_commands()


async def test_failed_payment_is_compensated() -> None:
    s = scenario()
    await s.given(
        AddStock(sku="tea", quantity=5), PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8)
    )
    await s.when(RecordPayment(order_id=ORDER, succeeded=False, reason="card declined"))
    s.then_commands(
        ReleaseStock(sku="tea", order_id=ORDER),
        CancelOrder(order_id=ORDER, reason="payment failed: card declined"),
    )
    order = await s.executor.load_aggregate(OrderProjector, order_keys(ORDER))
    assert order.payload.status == "cancelled"  # type: ignore[attr-defined]


async def test_out_of_stock_cancels_without_asking_for_payment() -> None:
    s = scenario()
    await s.given(AddStock(sku="tea", quantity=1))
    await s.when(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    s.then_commands(
        ReserveStock(sku="tea", order_id=ORDER, quantity=2),
        CancelOrder(order_id=ORDER, reason="out of stock"),
    )
    await s.then_side_effects()
    s.then_timeouts()


async def test_timeouts_survive_a_restart_of_the_runner() -> None:
    s = scenario()
    await s.given(
        AddStock(sku="tea", quantity=5), PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8)
    )
    # A new runner over the same stores: the pending timeout comes from the checkpoint.
    restarted = ReactionRunner(s.executor, OrderFulfilment(), store=s.runner.store, clock=s.clock)
    await restarted.start()
    [status] = restarted.status()
    assert [t["name"] for t in status.state["timeouts"]] == ["payment"]
    s.clock.advance(PAYMENT_WINDOW)
    s.executor.sent.clear()
    await restarted.run_until_idle()
    assert s.commands() == [
        ReleaseStock(sku="tea", order_id=ORDER),
        CancelOrder(order_id=ORDER, reason="no payment within 15 minutes"),
    ]


async def test_a_timeout_fired_again_from_a_stale_index_applies_nothing_twice() -> None:
    s = scenario()
    await s.given(
        AddStock(sku="tea", quantity=5), PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8)
    )
    stale = ReactionRunner(s.executor, OrderFulfilment(), store=s.runner.store, clock=s.clock)
    await stale.start()  # knows the timeout as pending
    await s.advance(PAYMENT_WINDOW)  # the first runner fires it
    first = [(c, m) for c, m in s.executor.sent]
    s.executor.sent.clear()
    # The stale runner fires it again before catching up: the step's command id is
    # already in the process's stream, so it is answered with the first step, whose
    # commands are re-sent under the same ids and applied by nobody.
    [work] = stale.subscriptions["order-fulfilment"].subscriber.due(s.clock(), stale)
    await work.run()
    assert s.executor.sent == first
    order = await s.executor.load_aggregate(OrderProjector, order_keys(ORDER))
    assert order.version == 2  # placed, cancelled once
    stock = await s.executor.load_aggregate(StockProjector, stock_keys("tea"))
    assert (stock.version, stock.payload.available) == (3, 5)  # type: ignore[attr-defined]


async def test_the_payment_request_is_delivered_through_the_outbox() -> None:
    sent: list[PendingEffect] = []

    async def request_payment(effect: PendingEffect) -> None:
        sent.append(effect)

    s = ReactionScenario(
        order_domain(), OrderFulfilment(), handlers={"request-payment": request_payment}
    )
    await s.given(AddStock(sku="tea", quantity=5))
    await s.when(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    assert [dict(e.data) for e in sent] == [{"order_id": ORDER, "amount": 8}]
    # The correlation of the order's command reaches the side effect.
    [placed] = [e for e in await s._events_since_mark() if e.partition_keys == order_keys(ORDER)]
    assert sent[0].correlation_id == placed.metadata.correlation_id


async def test_a_process_is_snapshotted_and_loads_from_its_snapshot() -> None:
    snapshots = InMemorySnapshotStore()
    executor = SekibanExecutor(
        order_domain(),
        snapshot_store=snapshots,
        snapshot_config=SnapshotConfiguration(strategy="count", count_threshold=2),
    )
    process = OrderFulfilment()
    runner = ReactionRunner(executor, process)
    await executor.command(AddStock(sku="tea", quantity=5))
    await executor.command(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    await runner.run_until_idle()
    keys = process.keys(ORDER)
    snapshot = await snapshots.get(keys, f"process-{process.name}")
    assert snapshot is not None
    loaded = await executor.repository.load(process.projector(), keys)
    assert loaded.load is not None and loaded.load.snapshot_version == snapshot.version
    replayed = process.projector().fold(
        process.projector().empty_aggregate(keys),
        [
            executor.repository.serializer.to_event(s)
            async for b in executor.event_store.read_stream(keys)
            for s in b
        ],
    )
    assert loaded.aggregate.payload == replayed.payload
    state = process.state_of(loaded.aggregate.payload)
    assert (state.order_id, state.stock_held) == (ORDER, True)


class FailingSends(RecordingExecutor):
    """Refuses to send ReserveStock while `down`: the process's step is committed, its
    command is not (as if the host died between the two)."""

    down = True

    async def command(self, command, metadata=None, *, command_id=None):  # type: ignore[no-untyped-def]
        if self.down and isinstance(command, ReserveStock):
            raise ConnectionError("network down")
        return await super().command(command, metadata, command_id=command_id)


async def test_a_step_whose_commands_were_not_sent_sends_them_once_when_retried() -> None:
    executor = FailingSends(order_domain())
    runner = ReactionRunner(executor, OrderFulfilment(), retry=RetryPolicy(attempts=2))
    await executor.command(AddStock(sku="tea", quantity=5))
    await executor.command(PlaceOrder(order_id=ORDER, sku="tea", quantity=2, amount=8))
    await runner.run_until_idle()
    [parked] = runner.status()[0].parked
    assert parked.event_type == "OrderPlaced"

    executor.down = False
    assert await runner.retry_parked("order-fulfilment") == 1
    await runner.run_until_idle()
    stream = [
        executor.repository.serializer.to_event(s).payload
        async for b in executor.event_store.read_stream(OrderFulfilment().keys(ORDER))
        for s in b
    ]
    # The step was committed once (answered from the stream on the retry)...
    assert [type(p).__name__ for p in stream].count("FulfilmentStarted") == 1
    # ...and its command applied once.
    stock = await executor.load_aggregate(StockProjector, stock_keys("tea"))
    assert (stock.version, stock.payload.available) == (2, 3)  # type: ignore[attr-defined]
