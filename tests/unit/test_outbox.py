"""The outbox: side effects delivered with retries and backoff, dead-lettered after the
last attempt, revived on request; its status read from the events."""

from __future__ import annotations

from datetime import timedelta

from examples.bank import AccountOpened, OpenAccount, bank_domain
from sekiban import Event, EventPayload, SekibanExecutor
from sekiban.projections import InMemoryProjectionStore
from sekiban.reactions import (
    REACTION_TYPES,
    OutboxDispatcher,
    PendingEffect,
    Reaction,
    ReactionRunner,
    RetrySideEffect,
    SideEffect,
    reactions_status,
)
from sekiban.retry import RetryPolicy
from sekiban.testing import FakeClock

DELIVERY = RetryPolicy(
    attempts=3, base_delay=timedelta(minutes=1), max_delay=timedelta(hours=1), jitter=False
)


class Welcome(Reaction):
    event_types = (AccountOpened,)

    def react(self, event: Event[EventPayload]) -> SideEffect:
        return SideEffect(kind="email", data={"to": event.payload.owner})  # type: ignore[attr-defined]


class Mailer:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls: list[PendingEffect] = []

    async def __call__(self, effect: PendingEffect) -> None:
        self.calls.append(effect)
        if len(self.calls) <= self.failures:
            raise ConnectionError("smtp down")


def setup(mailer: Mailer) -> tuple[SekibanExecutor, ReactionRunner, FakeClock]:
    clock = FakeClock()
    executor = SekibanExecutor(bank_domain().register(*REACTION_TYPES), clock=clock)
    dispatcher = OutboxDispatcher({"email": mailer}, retry=DELIVERY)
    store = InMemoryProjectionStore()
    runner = ReactionRunner(executor, Welcome(), dispatcher, store=store, clock=clock)
    return executor, runner, clock


async def test_a_side_effect_is_delivered_once_with_a_stable_id() -> None:
    mailer = Mailer()
    executor, runner, _ = setup(mailer)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    await runner.run_until_idle()
    [call] = mailer.calls
    assert (call.kind, dict(call.data), call.attempt) == ("email", {"to": "alice"}, 1)
    status = await reactions_status(executor.event_store, runner.store)
    assert status.outbox == {"pending": 0, "failed": 0, "dead_lettered": 0, "delivered": 1}


async def test_a_failed_delivery_is_retried_after_its_backoff() -> None:
    mailer = Mailer(failures=1)
    executor, runner, clock = setup(mailer)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    assert len(mailer.calls) == 1
    status = await reactions_status(executor.event_store, runner.store)
    assert status.outbox["failed"] == 1
    [item] = status.undelivered
    assert item.error == "ConnectionError: smtp down"
    assert item.retry_at == clock() + timedelta(minutes=1)

    clock.advance(timedelta(seconds=59))
    await runner.run_until_idle()
    assert len(mailer.calls) == 1  # not yet due
    clock.advance(timedelta(seconds=1))
    await runner.run_until_idle()
    assert [c.attempt for c in mailer.calls] == [1, 2]
    assert mailer.calls[0].effect_id == mailer.calls[1].effect_id
    status = await reactions_status(executor.event_store, runner.store)
    assert status.outbox["delivered"] == 1 and not status.undelivered


async def test_delivery_gives_up_into_a_dead_letter_and_can_be_revived() -> None:
    mailer = Mailer(failures=3)
    executor, runner, clock = setup(mailer)
    await executor.command(OpenAccount(owner="alice"))
    for _ in range(4):
        await runner.run_until_idle()
        clock.advance(timedelta(hours=1))
    assert len(mailer.calls) == 3  # DELIVERY.attempts, then no more
    status = await reactions_status(executor.event_store, runner.store)
    assert status.outbox["dead_lettered"] == 1
    [dead] = status.undelivered
    assert (dead.status, dead.attempts) == ("dead-lettered", 3)

    await executor.command(RetrySideEffect(effect_id=dead.effect_id))
    await runner.run_until_idle()
    assert len(mailer.calls) == 4
    status = await reactions_status(executor.event_store, runner.store)
    assert status.outbox == {"pending": 0, "failed": 0, "dead_lettered": 0, "delivered": 1}


async def test_a_kind_without_a_handler_fails_deliveries_with_a_clear_error() -> None:
    clock = FakeClock()
    executor = SekibanExecutor(bank_domain().register(*REACTION_TYPES), clock=clock)
    runner = ReactionRunner(executor, Welcome(), OutboxDispatcher({}, retry=DELIVERY), clock=clock)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    status = await reactions_status(executor.event_store)
    assert "NoSideEffectHandlerError" in status.undelivered[0].error


async def test_status_shows_each_checkpoints_lag_and_parked_items() -> None:
    mailer = Mailer()
    executor, runner, _ = setup(mailer)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    await executor.command(OpenAccount(owner="bob"))
    status = await reactions_status(executor.event_store, runner.store)
    lags = {c.name: c.lag for c in status.checkpoints}
    assert lags == {"welcome": 1, "outbox": 1}
    assert status.to_dict()["head"] == status.head
