"""One contract, every in-process host: the same behaviour from each `Executor`.

`SekibanExecutor` over memory and SQLite, and `ActorHarness` (the Dapr executor with
the real actor in process) over both. The real-daprd `DaprSekibanExecutor` runs the
core of these in tests/integration/test_dapr_actors.py. mypy checks this module, so
the `Executor` annotations below are the static half of the contract.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from examples.bank import (
    AccountProjector,
    ActiveAccount,
    ActiveAccountsQuery,
    DepositMoney,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    CommandIdMismatchError,
    ConcurrencyError,
    EventMetadata,
    Executor,
    PartitionKeys,
    RemoteCommandError,
    RetryPolicy,
    SekibanExecutor,
    StoredEvent,
)
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.stores import EventStore, InMemoryEventStore
from sekiban.stores.sqlite import SqliteEventStore
from sekiban.testing.actors import ActorHarness

MakeExecutor = Callable[[EventStore, RetryPolicy], Executor]
NO_WAIT = RetryPolicy(attempts=5, base_delay=timedelta(0))


def local(store: EventStore, retry: RetryPolicy) -> Executor:
    return SekibanExecutor(bank_domain(), store, conflict_retry=retry)


def actors(store: EventStore, retry: RetryPolicy) -> Executor:
    return ActorHarness(bank_domain(), store, conflict_retry=retry)


def static_contract(store: EventStore) -> Sequence[Executor]:
    """Every host is an `Executor` as far as mypy can tell."""
    executor: Executor = SekibanExecutor(bank_domain(), store)
    harness: Executor = ActorHarness(bank_domain(), store)
    dapr: Executor = DaprSekibanExecutor(bank_domain(), store, dapr_http_endpoint="http://x:1")
    return executor, harness, dapr


HOSTS = {"local": local, "actors": actors}
STORES = ["memory", "sqlite"]


@pytest.fixture(params=[(h, s) for h in HOSTS for s in STORES], ids=lambda p: "-".join(p))
async def host(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, MakeExecutor, EventStore]]:
    name, kind = request.param
    store: EventStore = (
        InMemoryEventStore() if kind == "memory" else await SqliteEventStore.open(tmp_path / "e.db")
    )
    yield name, HOSTS[name], store
    await store.close()


def refusal(error: BaseException) -> str:
    """The name of the error that refused a command, wherever the host raised it."""
    return error.error_type if isinstance(error, RemoteCommandError) else type(error).__name__


async def stored(store: EventStore, keys: PartitionKeys) -> list[StoredEvent]:
    return [e async for batch in store.read_stream(keys) for e in batch]


async def open_with_deposits(executor: Executor, deposits: int) -> PartitionKeys:
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(deposits):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    return keys


async def test_a_command_round_trips_to_the_aggregate(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    executor = make(store, NO_WAIT)
    opened = await executor.command(OpenAccount(owner="ann"))
    keys = opened.partition_keys
    deposited = await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=7))

    assert (opened.version, deposited.version) == (1, 2)
    assert [type(e.payload).__name__ for e in deposited.events] == ["MoneyDeposited"]
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert aggregate.version == 2
    assert aggregate.payload == ActiveAccount(owner="ann", balance=7, transactions=1)


async def test_a_cold_load_replays_the_stream_and_says_so(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    keys = await open_with_deposits(make(store, NO_WAIT), 3)

    loaded = await make(store, NO_WAIT).load(AccountProjector, keys)

    assert loaded.aggregate.version == 4
    assert not loaded.statistics.from_snapshot
    assert loaded.statistics.events_replayed == 4


async def test_an_aggregate_without_events_loads_at_version_zero(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    aggregate = await make(store, NO_WAIT).load_aggregate(
        AccountProjector, PartitionKeys.generate("account")
    )
    assert aggregate.version == 0


async def test_a_query_sees_every_command(host: tuple[str, MakeExecutor, EventStore]) -> None:
    _, make, store = host
    executor = make(store, NO_WAIT)
    for deposits in (1, 2, 3):
        await open_with_deposits(executor, deposits)
    result = await executor.query(ActiveAccountsQuery(min_balance=2))
    assert result.total_count == 2


async def test_a_refused_command_names_its_error_and_appends_nothing(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    executor = make(store, NO_WAIT)
    keys = await open_with_deposits(executor, 1)

    with pytest.raises(Exception) as refused:
        await executor.command(OpenAccount(owner="again", account_id=keys.aggregate_id))

    assert refusal(refused.value) == "AggregateStateError"
    assert len(await stored(store, keys)) == 2


async def test_the_command_id_is_the_causation_id_of_its_events(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    executor = make(store, NO_WAIT)
    opened = await executor.command(OpenAccount(owner="ann"), command_id="open-ann")
    assert [e.metadata.causation_id for e in opened.events] == ["open-ann"]
    assert [e.causation_id for e in await stored(store, opened.partition_keys)] == ["open-ann"]
    # The same id in the metadata is no contradiction.
    same = await executor.command(
        DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=1),
        EventMetadata(causation_id="deposit-1", executed_user="ann"),
        command_id="deposit-1",
    )
    metadata = same.events[0].metadata
    assert (metadata.causation_id, metadata.executed_user) == ("deposit-1", "ann")


async def test_a_command_id_that_contradicts_the_metadata_is_refused_before_sending(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    executor = make(store, NO_WAIT)
    keys = await open_with_deposits(executor, 0)
    with pytest.raises(CommandIdMismatchError, match=r"'a'.*'b'") as refused:
        await executor.command(
            DepositMoney(account_id=keys.aggregate_id, amount=1),
            EventMetadata(causation_id="b"),
            command_id="a",
        )
    assert isinstance(refused.value, ValueError)
    assert len(await stored(store, keys)) == 1


async def test_a_resent_command_id_is_applied_once(
    host: tuple[str, MakeExecutor, EventStore],
) -> None:
    _, make, store = host
    executor = make(store, NO_WAIT)
    keys = await open_with_deposits(executor, 0)
    deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)

    first = await executor.command(deposit, command_id="deposit-1")
    again = await executor.command(deposit, command_id="deposit-1")

    assert again == first
    assert len(await stored(store, keys)) == 2


class RivalStore(InMemoryEventStore):
    """An event store where another writer deposits 1 just before each of the next
    `races` appends: every one of them loses a race."""

    def __init__(self) -> None:
        super().__init__()
        self.races = 0
        self.rival = SekibanExecutor(bank_domain(), self)
        self.account: uuid.UUID | None = None
        self.rival_appending = False

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        if self.races and self.account and not self.rival_appending:
            self.races -= 1
            self.rival_appending = True
            try:
                await self.rival.command(DepositMoney(account_id=self.account, amount=1))
            finally:
                self.rival_appending = False
        await super().append(events, expected_version, command_id=command_id)


def counting_random(draws: list[float]) -> Callable[[], float]:
    source = random.Random(7)

    def draw() -> float:
        draws.append(source.random())
        return draws[-1]

    return draw


@pytest.mark.parametrize("name", HOSTS)
async def test_a_command_that_loses_races_catches_up_and_retries_as_the_policy_says(
    name: str,
) -> None:
    store = RivalStore()
    draws: list[float] = []
    retry = RetryPolicy(
        attempts=3, base_delay=timedelta(microseconds=1), random=counting_random(draws)
    )
    executor = HOSTS[name](store, retry)
    keys = await open_with_deposits(executor, 0)
    await executor.load_aggregate(AccountProjector, keys)  # warm the actor, if any
    store.account, store.races = keys.aggregate_id, 2

    response = await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=10))

    assert response.version == 4  # opened, two rival deposits, then ours
    assert len(draws) == 2  # one jittered pause before each retry
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert aggregate.payload == ActiveAccount(owner="ann", balance=12, transactions=3)


@pytest.mark.parametrize("name", HOSTS)
async def test_a_command_that_loses_more_races_than_the_policy_allows_fails_cleanly(
    name: str,
) -> None:
    store = RivalStore()
    executor = HOSTS[name](store, RetryPolicy(attempts=2, base_delay=timedelta(0)))
    keys = await open_with_deposits(executor, 0)
    await executor.load_aggregate(AccountProjector, keys)
    store.account, store.races = keys.aggregate_id, 2

    with pytest.raises(Exception) as lost:
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=10))

    assert refusal(lost.value) == ConcurrencyError.__name__
    # The host is not stuck on the stale state: the next command goes through.
    after = await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=10))
    assert after.version == 4
    assert (await executor.load_aggregate(AccountProjector, keys)).version == 4


def test_every_host_is_an_executor_at_runtime_too() -> None:
    hosts = static_contract(InMemoryEventStore())
    for host in hosts:
        for method in ("command", "load", "load_aggregate", "query"):
            assert callable(getattr(host, method))
