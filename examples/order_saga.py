"""A complete saga: an order reserves stock, asks for payment, and is confirmed, or
cancelled with its stock released.

- `OrderPlaced` -> the `OrderFulfilment` process reserves stock and waits 15 minutes for
  the payment (a timeout kept in its own stream, so it survives restarts).
- `StockReserved` -> it records a "request-payment" side effect (the outbox delivers it
  to the payment provider, retried and dead-lettered if the provider keeps failing).
- `PaymentSucceeded` -> `ConfirmOrder`; done.
- `PaymentFailed`, or no payment within 15 minutes -> compensation: `ReleaseStock` and
  `CancelOrder`; done. `StockReservationFailed` -> `CancelOrder`; done.

Run it: `python -m examples.order_saga`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel

from sekiban import (
    AggregatePayload,
    AggregateProjector,
    Command,
    CommandContext,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    PartitionKeys,
    SekibanExecutor,
)
from sekiban.reactions import (
    REACTION_TYPES,
    FiredTimeout,
    OutboxDispatcher,
    PendingEffect,
    ProcessManager,
    ReactionRunner,
    SideEffect,
    Step,
    Timeout,
)

PAYMENT_WINDOW = timedelta(minutes=15)

# --- orders ---------------------------------------------------------------


class OrderPlaced(EventPayload):
    order_id: str
    sku: str
    quantity: int
    amount: int


class OrderConfirmed(EventPayload):
    order_id: str


class OrderCancelled(EventPayload):
    order_id: str
    reason: str


class Order(AggregatePayload):
    sku: str
    quantity: int
    amount: int
    status: str = "placed"


class OrderProjector(AggregateProjector):
    name = "order"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        match payload, event.payload:
            case EmptyAggregatePayload(), OrderPlaced() as p:
                return Order(sku=p.sku, quantity=p.quantity, amount=p.amount)
            case Order(), OrderConfirmed():
                return payload.evolve(status="confirmed")
            case Order(), OrderCancelled():
                return payload.evolve(status="cancelled")
        return payload


def order_keys(order_id: str) -> PartitionKeys:
    return PartitionKeys.existing(order_id, "order")


class PlaceOrder(Command):
    projector: ClassVar[type[AggregateProjector]] = OrderProjector
    required_payload = (EmptyAggregatePayload,)
    order_id: str
    sku: str
    quantity: int
    amount: int

    def partition_keys(self) -> PartitionKeys:
        return order_keys(self.order_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return OrderPlaced(**self.model_dump())


class ConfirmOrder(Command):
    projector: ClassVar[type[AggregateProjector]] = OrderProjector
    order_id: str

    def partition_keys(self) -> PartitionKeys:
        return order_keys(self.order_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        order = context.payload
        if isinstance(order, Order) and order.status == "placed":
            return [OrderConfirmed(order_id=self.order_id)]
        return []


class CancelOrder(Command):
    projector: ClassVar[type[AggregateProjector]] = OrderProjector
    order_id: str
    reason: str

    def partition_keys(self) -> PartitionKeys:
        return order_keys(self.order_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        order = context.payload
        if isinstance(order, Order) and order.status == "placed":
            return [OrderCancelled(order_id=self.order_id, reason=self.reason)]
        return []


# --- stock ----------------------------------------------------------------


class StockAdded(EventPayload):
    quantity: int


class StockReserved(EventPayload):
    order_id: str
    quantity: int


class StockReservationFailed(EventPayload):
    order_id: str
    quantity: int
    available: int


class StockReleased(EventPayload):
    order_id: str
    quantity: int


class Stock(AggregatePayload):
    available: int = 0
    reserved: dict[str, int] = {}


class StockProjector(AggregateProjector):
    name = "stock"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        stock = payload if isinstance(payload, Stock) else Stock()
        match event.payload:
            case StockAdded(quantity=n):
                return stock.evolve(available=stock.available + n)
            case StockReserved(order_id=order, quantity=n):
                reserved = {**stock.reserved, order: n}
                return stock.evolve(available=stock.available - n, reserved=reserved)
            case StockReleased(order_id=order, quantity=n):
                reserved = {k: v for k, v in stock.reserved.items() if k != order}
                return stock.evolve(available=stock.available + n, reserved=reserved)
        return stock


def stock_keys(sku: str) -> PartitionKeys:
    return PartitionKeys(uuid.uuid5(uuid.NAMESPACE_URL, f"sku:{sku}"), "stock")


class _StockCommand(Command):
    projector: ClassVar[type[AggregateProjector]] = StockProjector
    sku: str

    def partition_keys(self) -> PartitionKeys:
        return stock_keys(self.sku)


class AddStock(_StockCommand):
    quantity: int

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return StockAdded(quantity=self.quantity)


class ReserveStock(_StockCommand):
    """Reserve, or record that it could not: a refusal a process must react to is an
    event, not an exception (an exception would park the process's step)."""

    order_id: str
    quantity: int

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        stock = context.payload if isinstance(context.payload, Stock) else Stock()
        if stock.available < self.quantity:
            return StockReservationFailed(
                order_id=self.order_id, quantity=self.quantity, available=stock.available
            )
        return StockReserved(order_id=self.order_id, quantity=self.quantity)


class ReleaseStock(_StockCommand):
    order_id: str

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        stock = context.payload
        if isinstance(stock, Stock) and self.order_id in stock.reserved:
            quantity = stock.reserved[self.order_id]
            return [StockReleased(order_id=self.order_id, quantity=quantity)]
        return []


# --- payments (reported by the payment provider) ---------------------------


class PaymentSucceeded(EventPayload):
    order_id: str


class PaymentFailed(EventPayload):
    order_id: str
    reason: str


class PaymentProjector(AggregateProjector):
    name = "payment"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        return payload


class RecordPayment(Command):
    projector: ClassVar[type[AggregateProjector]] = PaymentProjector
    order_id: str
    succeeded: bool
    reason: str = ""

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.order_id, "payment")

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        if self.succeeded:
            return PaymentSucceeded(order_id=self.order_id)
        return PaymentFailed(order_id=self.order_id, reason=self.reason)


# --- the saga -------------------------------------------------------------


class FulfilmentStarted(EventPayload):
    order_id: str
    sku: str
    quantity: int
    amount: int


class StockHeld(EventPayload):
    pass


class Fulfilment(BaseModel):
    order_id: str = ""
    sku: str = ""
    quantity: int = 0
    amount: int = 0
    stock_held: bool = False


class OrderFulfilment(ProcessManager[Fulfilment]):
    """Order -> reserve stock -> payment; cancel (releasing stock) when payment fails
    or does not come within `PAYMENT_WINDOW`."""

    name = "order-fulfilment"
    groups = ("order", "stock", "payment")
    event_types = (
        OrderPlaced,
        StockReserved,
        StockReservationFailed,
        PaymentSucceeded,
        PaymentFailed,
    )

    def correlate(self, event: Event[EventPayload]) -> str | None:
        order_id: str | None = getattr(event.payload, "order_id", None)
        return order_id

    def initial_state(self) -> Fulfilment:
        return Fulfilment()

    def apply(self, state: Fulfilment, event: EventPayload) -> Fulfilment:
        match event:
            case FulfilmentStarted() as p:
                return state.model_copy(update=p.model_dump())
            case StockHeld():
                return state.model_copy(update={"stock_held": True})
        return state

    def handle(self, state: Fulfilment, event: Event[EventPayload], now: datetime) -> Step | None:
        match event.payload:
            case OrderPlaced(order_id=order_id, sku=sku, quantity=quantity, amount=amount):
                return Step(
                    events=[
                        FulfilmentStarted(
                            order_id=order_id, sku=sku, quantity=quantity, amount=amount
                        )
                    ],
                    commands=[ReserveStock(sku=sku, order_id=order_id, quantity=quantity)],
                    schedule=[Timeout("payment", PAYMENT_WINDOW)],
                )
            case StockReserved(order_id=order_id):
                request = SideEffect(
                    kind="request-payment", data={"order_id": order_id, "amount": state.amount}
                )
                return Step(events=[StockHeld()], side_effects=[request])
            case StockReservationFailed(order_id=order_id):
                return self._cancel(state, order_id, "out of stock")
            case PaymentSucceeded(order_id=order_id):
                confirm = ConfirmOrder(order_id=order_id)
                return Step(commands=[confirm], cancel=["payment"], complete=True)
            case PaymentFailed(order_id=order_id, reason=reason):
                return self._cancel(state, order_id, f"payment failed: {reason}")
        return None

    def on_timeout(self, state: Fulfilment, timeout: FiredTimeout, now: datetime) -> Step:
        return self._cancel(state, state.order_id, "no payment within 15 minutes")

    def _cancel(self, state: Fulfilment, order_id: str, reason: str) -> Step:
        commands: list[Command] = [CancelOrder(order_id=order_id, reason=reason)]
        if state.stock_held:
            commands.insert(0, ReleaseStock(sku=state.sku, order_id=order_id))
        return Step(commands=commands, cancel=["payment"], complete=True)


def order_domain() -> DomainTypes:
    return DomainTypes(
        *REACTION_TYPES,
        OrderPlaced,
        OrderConfirmed,
        OrderCancelled,
        Order,
        OrderProjector,
        PlaceOrder,
        ConfirmOrder,
        CancelOrder,
        StockAdded,
        StockReserved,
        StockReservationFailed,
        StockReleased,
        Stock,
        StockProjector,
        AddStock,
        ReserveStock,
        ReleaseStock,
        PaymentSucceeded,
        PaymentFailed,
        PaymentProjector,
        RecordPayment,
        FulfilmentStarted,
        StockHeld,
    )


async def request_payment(effect: PendingEffect) -> None:
    """Stands in for the payment provider's API (which would take `effect_id` as its
    idempotency key)."""
    print(f"payment requested: {dict(effect.data)} (id {effect.effect_id})")


def reactions() -> list[ProcessManager[Fulfilment] | OutboxDispatcher]:
    """What `sekiban reactions run --reactions examples.order_saga:reactions` runs."""
    return [OrderFulfilment(), OutboxDispatcher({"request-payment": request_payment})]


async def main() -> None:
    executor = SekibanExecutor(order_domain())
    requested: list[PendingEffect] = []

    async def request_payment(effect: PendingEffect) -> None:
        requested.append(effect)  # a real one calls the provider with effect_id as key

    now = datetime(2026, 1, 1, tzinfo=UTC)
    runner = ReactionRunner(
        executor,
        OrderFulfilment(),
        OutboxDispatcher({"request-payment": request_payment}),
        clock=lambda: now,
    )
    await executor.command(AddStock(sku="tea", quantity=10))
    await executor.command(PlaceOrder(order_id=str(uuid.uuid4()), sku="tea", quantity=2, amount=8))
    paid = str(uuid.uuid4())
    await executor.command(PlaceOrder(order_id=paid, sku="tea", quantity=3, amount=12))
    while await runner.run_once():
        pass
    await runner.run_once()  # deliver the payment requests
    await executor.command(RecordPayment(order_id=paid, succeeded=True))
    now += PAYMENT_WINDOW + timedelta(seconds=1)
    while await runner.run_once():
        pass
    stock = await executor.load_aggregate(StockProjector, stock_keys("tea"))
    print(f"payment requests sent: {len(requested)}; stock left: {stock.payload}")


if __name__ == "__main__":
    asyncio.run(main())
