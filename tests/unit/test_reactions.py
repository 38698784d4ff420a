"""Reactions on the runner: derived command ids, correlation, checkpoints, re-delivery
after a crash, retries and parking."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from examples.bank import (
    AccountOpened,
    AccountProjector,
    DepositMoney,
    MoneyDeposited,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    ConfigurationError,
    Event,
    EventMetadata,
    EventPayload,
    InvalidHandlerResultError,
    SekibanExecutor,
    SerializationError,
    UnknownReactionError,
)
from sekiban.projections import InMemoryProjectionStore, ProjectionRecord
from sekiban.reactions import (
    REACTION_TYPES,
    Reaction,
    ReactionRunner,
    SideEffect,
    SideEffectRequested,
    derived_id,
)
from sekiban.retry import RetryPolicy
from sekiban.stores import InMemoryEventStore


def domain():  # type: ignore[no-untyped-def]
    return bank_domain().register(*REACTION_TYPES)


class WelcomeBonus(Reaction):
    """Every new account gets 10."""

    event_types = (AccountOpened,)

    def __init__(self) -> None:
        self.seen: list[uuid.UUID] = []

    def react(self, event: Event[EventPayload]) -> DepositMoney:
        self.seen.append(event.id)
        return DepositMoney(account_id=event.partition_keys.aggregate_id, amount=10)


class Flaky(Reaction):
    """Fails on the accounts named in `failing`; counts its attempts."""

    event_types = (AccountOpened,)

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.attempts: dict[str, int] = {}
        self.handled: list[str] = []

    def react(self, event: Event[EventPayload]) -> None:
        owner = event.payload.owner  # type: ignore[attr-defined]
        self.attempts[owner] = self.attempts.get(owner, 0) + 1
        if owner in self.failing:
            raise RuntimeError(f"cannot handle {owner}")
        self.handled.append(owner)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


RETRY = RetryPolicy(
    attempts=3, base_delay=timedelta(seconds=1), max_delay=timedelta(seconds=10), jitter=False
)


async def deposits(executor: SekibanExecutor) -> list[Event[EventPayload]]:
    to_event = executor.repository.serializer.to_event
    return [
        to_event(s)
        async for batch in executor.event_store.read_all()
        for s in batch
        if s.event_type == "MoneyDeposited"
    ]


async def test_a_reaction_sends_its_command_with_a_derived_id_and_the_events_correlation() -> None:
    executor = SekibanExecutor(domain())
    runner = ReactionRunner(executor, WelcomeBonus())
    metadata = EventMetadata(correlation_id="signup-42")
    opened = await executor.command(OpenAccount(owner="alice"), metadata)
    await runner.run_until_idle()
    [deposit] = await deposits(executor)
    assert deposit.payload == MoneyDeposited(amount=10)
    assert deposit.partition_keys == opened.partition_keys
    assert deposit.metadata.correlation_id == "signup-42"
    assert deposit.metadata.causation_id == derived_id("welcome-bonus", str(opened.events[0].id), 0)
    assert deposit.metadata.executed_user == "sekiban:welcome-bonus"


async def test_the_checkpoint_is_a_projection_record_named_after_the_reaction() -> None:
    executor = SekibanExecutor(domain())
    store = InMemoryProjectionStore()
    runner = ReactionRunner(executor, WelcomeBonus(), store=store)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    record = await store.get("reaction:welcome-bonus")
    assert record is not None and record.position == 2  # the opening and the bonus
    assert json.loads(record.payload or b"")["position"] == 2


async def test_redelivery_from_an_older_checkpoint_applies_no_command_twice() -> None:
    # A crash after the commands were applied and before the checkpoint was saved is a
    # restart from the older checkpoint: every event is handed over again.
    executor = SekibanExecutor(domain())
    store = InMemoryProjectionStore()
    first = ReactionRunner(executor, WelcomeBonus(), store=store)
    await first.run_until_idle()
    old = await store.get("reaction:welcome-bonus")
    for owner in ("alice", "bob", "carol"):
        await executor.command(OpenAccount(owner=owner))
    await first.run_until_idle()
    assert len(await deposits(executor)) == 3

    restored = InMemoryProjectionStore()
    assert old is not None
    await restored.save(old)
    again = WelcomeBonus()
    await ReactionRunner(executor, again, store=restored).run_until_idle()
    assert len(again.seen) == 3  # handed over again...
    assert len(await deposits(executor)) == 3  # ...and nothing applied twice
    for account in {e.partition_keys for e in await deposits(executor)}:
        aggregate = await executor.load_aggregate(AccountProjector, account)
        assert aggregate.payload.balance == 10  # type: ignore[attr-defined]


async def test_a_failing_handler_is_retried_with_backoff_then_parked_while_later_events_flow() -> (
    None
):
    executor = SekibanExecutor(domain())
    sleeps = Sleeps()
    flaky = Flaky(failing={"bob"})
    runner = ReactionRunner(executor, flaky, retry=RETRY, sleep=sleeps)
    for owner in ("alice", "bob", "carol"):
        await executor.command(OpenAccount(owner=owner))
    await runner.run_until_idle()
    assert flaky.handled == ["alice", "carol"]
    assert flaky.attempts["bob"] == 3
    assert sleeps.delays == [1.0, 2.0]
    [status] = runner.status()
    [parked] = status.parked
    assert (parked.event_type, parked.position, parked.attempts) == ("AccountOpened", 2, 3)
    assert parked.error == "RuntimeError: cannot handle bob"
    assert status.position == 3

    flaky.failing.clear()
    assert await runner.retry_parked("flaky") == 1
    assert flaky.handled == ["alice", "carol", "bob"]
    assert runner.status()[0].parked == ()


async def test_parked_items_survive_a_restart() -> None:
    executor = SekibanExecutor(domain())
    store = InMemoryProjectionStore()
    await executor.command(OpenAccount(owner="bob"))
    runner = ReactionRunner(executor, Flaky({"bob"}), store=store, retry=RETRY, sleep=Sleeps())
    await runner.run_until_idle()
    restarted = ReactionRunner(executor, Flaky(set()), store=store)
    await restarted.start()
    assert [p.event_type for p in restarted.status()[0].parked] == ["AccountOpened"]
    assert await restarted.retry_parked("flaky") == 1


async def test_retry_parked_of_an_unknown_name_says_which_names_exist() -> None:
    runner = ReactionRunner(SekibanExecutor(domain()), WelcomeBonus())
    with pytest.raises(UnknownReactionError, match="welcome-bonus"):
        await runner.retry_parked("nope")


async def test_a_reaction_reads_only_its_event_types_and_groups() -> None:
    seen: list[str] = []

    class OnlyDeposits(Reaction):
        groups = ("account",)
        event_types = (MoneyDeposited,)

        def react(self, event: Event[EventPayload]) -> None:
            seen.append(type(event.payload).__name__)

    executor = SekibanExecutor(domain())
    opened = await executor.command(OpenAccount(owner="alice"))
    await executor.command(DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=5))
    await ReactionRunner(executor, OnlyDeposits()).run_until_idle()
    assert seen == ["MoneyDeposited"]


async def test_a_side_effect_of_a_reaction_is_recorded_once_however_often_it_is_delivered() -> None:
    class Notify(Reaction):
        event_types = (AccountOpened,)

        def react(self, event: Event[EventPayload]) -> SideEffect:
            return SideEffect(kind="email", data={"to": event.payload.owner})  # type: ignore[attr-defined]

    executor = SekibanExecutor(domain())
    await executor.command(OpenAccount(owner="alice"))
    await ReactionRunner(executor, Notify()).run_until_idle()
    await ReactionRunner(executor, Notify()).run_until_idle()  # no checkpoint: from 0
    to_event = executor.repository.serializer.to_event
    requested = [
        to_event(s).payload
        async for b in executor.event_store.read_all()
        for s in b
        if s.event_type == "SideEffectRequested"
    ]
    assert len(requested) == 1
    assert isinstance(requested[0], SideEffectRequested)
    assert requested[0].data == {"to": "alice"}


async def test_a_reaction_returning_something_else_is_parked_with_a_clear_error() -> None:
    class Wrong(Reaction):
        def react(self, event: Event[EventPayload]) -> object:
            return 42

    executor = SekibanExecutor(domain())
    await executor.command(OpenAccount(owner="alice"))
    runner = ReactionRunner(executor, Wrong(), retry=RetryPolicy.never())  # type: ignore[abstract]
    await runner.run_until_idle()
    [parked] = runner.status()[0].parked
    assert InvalidHandlerResultError.__name__ in parked.error


def test_a_reaction_name_that_cannot_make_command_ids_is_refused() -> None:
    with pytest.raises(ConfigurationError):

        class Bad(Reaction):
            name = "a:b"

            def react(self, event: Event[EventPayload]) -> None:
                return None


async def test_a_checkpoint_ahead_of_a_stored_one_is_kept() -> None:
    store = InMemoryProjectionStore()
    executor = SekibanExecutor(domain(), InMemoryEventStore())
    await executor.command(OpenAccount(owner="alice"))
    runner = ReactionRunner(executor, WelcomeBonus(), store=store)
    await runner.run_until_idle()
    record = await store.get("reaction:welcome-bonus")
    assert isinstance(record, ProjectionRecord)
    assert not await store.save(replace(record, position=0))


async def test_a_corrupt_checkpoint_is_refused_with_what_to_do() -> None:
    executor = SekibanExecutor(domain())
    store = InMemoryProjectionStore()
    runner = ReactionRunner(executor, WelcomeBonus(), store=store)
    await executor.command(OpenAccount(owner="alice"))
    await runner.run_until_idle()
    record = await store.get("reaction:welcome-bonus")
    assert record is not None
    await store.save(replace(record, payload=b"{not json"))
    with pytest.raises(SerializationError, match="delete it"):
        await ReactionRunner(executor, WelcomeBonus(), store=store).start()


def test_two_reactions_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="welcome-bonus"):
        ReactionRunner(SekibanExecutor(domain()), WelcomeBonus(), WelcomeBonus())
