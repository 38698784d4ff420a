import asyncio
import threading
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from examples.bank import (
    AccountClosed,
    AccountOpened,
    AccountProjector,
    ActiveAccount,
    ActiveAccountsQuery,
    CloseAccount,
    ClosedAccount,
    DepositMoney,
    InsufficientFundsError,
    MoneyWithdrawn,
    OpenAccount,
    WithdrawMoney,
    bank_domain,
)
from sekiban import (
    AggregatePayload,
    AggregateStateError,
    Command,
    CommandContext,
    CommandLimits,
    ConcurrencyError,
    EventMetadata,
    PartitionKeys,
    PayloadTooLargeError,
    SekibanExecutor,
    UnknownTypeError,
)
from sekiban.errors import InvalidHandlerResultError
from sekiban.retry import RetryPolicy
from sekiban.stores import InMemoryEventStore
from sekiban.stores.sqlite import SqliteEventStore


async def stream_versions(executor: SekibanExecutor, keys: PartitionKeys) -> list[int]:
    return [e.version async for b in executor.event_store.read_stream(keys) for e in b]


async def open_account(executor: SekibanExecutor, deposit: int = 0) -> PartitionKeys:
    keys = (await executor.command(OpenAccount(owner="alice"))).partition_keys
    if deposit:
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=deposit))
    return keys


async def test_command_appends_events_and_aggregate_reflects_them() -> None:
    executor = SekibanExecutor(bank_domain())
    opened = await executor.command(OpenAccount(owner="alice"))
    assert opened.version == 1
    assert [type(e.payload) for e in opened.events] == [AccountOpened]
    keys = opened.partition_keys
    deposited = await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=30))
    assert deposited.version == 2 and deposited.events[0].version == 2
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert aggregate.payload == ActiveAccount(owner="alice", balance=30, transactions=1)
    assert aggregate.version == 2
    assert aggregate.last_sortable_unique_id == deposited.events[0].sortable_unique_id


async def test_multi_event_command_gets_consecutive_versions() -> None:
    executor = SekibanExecutor(bank_domain())
    keys = await open_account(executor, deposit=50)
    closed = await executor.command(CloseAccount(account_id=keys.aggregate_id, reason="moving"))
    assert [type(e.payload) for e in closed.events] == [MoneyWithdrawn, AccountClosed]
    assert [e.version for e in closed.events] == [3, 4]
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert aggregate.payload == ClosedAccount(owner="alice", reason="moving")


async def test_unknown_aggregate_loads_empty_at_version_zero() -> None:
    executor = SekibanExecutor(bank_domain())
    aggregate = await executor.load_aggregate(AccountProjector, PartitionKeys.generate("account"))
    assert aggregate.version == 0 and aggregate.is_empty


def test_invalid_command_fields_raise_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="amount"):
        DepositMoney(account_id=uuid.uuid4(), amount=0)
    with pytest.raises(ValidationError, match="owner"):
        OpenAccount(owner="")


async def test_command_for_aggregate_in_wrong_state_is_rejected_and_appends_nothing() -> None:
    executor = SekibanExecutor(bank_domain())
    missing = uuid.uuid4()
    with pytest.raises(AggregateStateError, match="ActiveAccount"):
        await executor.command(DepositMoney(account_id=missing, amount=5))
    assert await stream_versions(executor, PartitionKeys.existing(missing, "account")) == []
    keys = await open_account(executor)
    with pytest.raises(AggregateStateError, match="EmptyAggregatePayload"):
        await executor.command(OpenAccount(owner="bob", account_id=keys.aggregate_id))
    assert await stream_versions(executor, keys) == [1]


async def test_handler_error_appends_nothing() -> None:
    executor = SekibanExecutor(bank_domain())
    keys = await open_account(executor, deposit=10)
    with pytest.raises(InsufficientFundsError):
        await executor.command(WithdrawMoney(account_id=keys.aggregate_id, amount=11))
    assert await stream_versions(executor, keys) == [1, 2]


class _Returns(Command):
    projector = AccountProjector
    value: str = "nonsense"

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.generate("account")

    def handle(self, context: CommandContext[AggregatePayload]) -> object:  # type: ignore[override]
        return self.value


async def test_handler_returning_non_events_is_a_typed_error() -> None:
    with pytest.raises(InvalidHandlerResultError, match="nonsense"):
        await SekibanExecutor(bank_domain()).command(_Returns())


class _AsyncOpen(Command):
    projector = AccountProjector
    keys: str

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.parse(self.keys)

    async def handle(self, context: CommandContext[AggregatePayload]) -> AccountOpened:
        await asyncio.sleep(0)
        return AccountOpened(owner="async")


async def test_async_handlers_are_awaited() -> None:
    executor = SekibanExecutor(bank_domain())
    keys = PartitionKeys.generate("account")
    response = await executor.command(_AsyncOpen(keys=str(keys)))
    assert response.events[0].payload == AccountOpened(owner="async")


async def test_command_whose_projector_is_not_registered_is_rejected() -> None:
    from sekiban import DomainTypes

    with pytest.raises(UnknownTypeError, match="AccountProjector"):
        await SekibanExecutor(DomainTypes()).command(OpenAccount(owner="x"))


async def test_metadata_is_carried_on_every_event() -> None:
    executor = SekibanExecutor(bank_domain())
    keys = await open_account(executor, deposit=10)
    metadata = EventMetadata("cmd-1", "corr-1", "carol")
    response = await executor.command(CloseAccount(account_id=keys.aggregate_id), metadata)
    assert {e.metadata for e in response.events} == {metadata}
    stored = [e async for b in executor.event_store.read_stream(keys, 2) for e in b]
    assert {(e.causation_id, e.correlation_id, e.executed_user) for e in stored} == {
        ("cmd-1", "corr-1", "carol")
    }


async def test_oversized_event_payload_is_rejected_and_appends_nothing() -> None:
    executor = SekibanExecutor(bank_domain(), limits=CommandLimits(max_payload_bytes=50))
    with pytest.raises(PayloadTooLargeError, match="AccountOpened"):
        await executor.command(OpenAccount(owner="x" * 100))
    assert [e async for b in executor.event_store.read_all() for e in b] == []


def _race(
    path: Path, keys: PartitionKeys, clients: int, each: int, retries: int
) -> tuple[int, int]:
    """`clients` threads, each with its own event loop and its own connection to one
    SQLite file, deposit `each` times: a real race between writers."""
    successes = conflicts = 0
    lock = threading.Lock()

    async def client() -> None:
        nonlocal successes, conflicts
        store = await SqliteEventStore.open(path)
        executor = SekibanExecutor(
            bank_domain(), store, conflict_retry=RetryPolicy(attempts=retries + 1)
        )
        try:
            for _ in range(each):
                try:
                    await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
                    outcome = "ok"
                except ConcurrencyError:
                    outcome = "conflict"
                with lock:
                    if outcome == "ok":
                        successes += 1
                    else:
                        conflicts += 1
        finally:
            await store.close()

    threads = [threading.Thread(target=asyncio.run, args=(client(),)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return successes, conflicts


async def test_racing_writers_without_retries_report_conflicts_and_lose_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "race.db"
    store = await SqliteEventStore.open(path)
    executor = SekibanExecutor(bank_domain(), store)
    keys = await open_account(executor)
    successes = conflicts = rounds = 0
    while not conflicts and rounds < 10:  # a loaded machine may serialise a round
        won, lost = await asyncio.to_thread(_race, path, keys, 8, 20, 0)
        successes, conflicts, rounds = successes + won, conflicts + lost, rounds + 1
    assert successes + conflicts == 160 * rounds and conflicts > 0
    versions = await stream_versions(executor, keys)
    assert versions == list(range(1, successes + 2))
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert isinstance(aggregate.payload, ActiveAccount) and aggregate.payload.balance == successes
    await store.close()


async def test_racing_writers_with_retries_all_succeed_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    store = await SqliteEventStore.open(path)
    executor = SekibanExecutor(bank_domain(), store)
    keys = await open_account(executor)
    successes, conflicts = await asyncio.to_thread(_race, path, keys, 8, 20, 1000)
    assert (successes, conflicts) == (160, 0)
    assert await stream_versions(executor, keys) == list(range(1, 162))
    await store.close()


async def test_list_query_filters_sorts_and_pages() -> None:
    executor = SekibanExecutor(bank_domain())
    for amount in [30, 10, 50, 20]:
        await open_account(executor, deposit=amount)
    closed = await open_account(executor, deposit=99)
    await executor.command(CloseAccount(account_id=closed.aggregate_id))
    rich = await executor.query(ActiveAccountsQuery(min_balance=20))
    assert [a.payload.balance for a in rich.items] == [50, 30, 20]  # type: ignore[attr-defined]
    page = await executor.query(ActiveAccountsQuery(page_size=2, page_number=2))
    assert page.total_count == 4
    assert [a.payload.balance for a in page.items] == [20, 10]  # type: ignore[attr-defined]


async def test_query_catches_up_with_events_appended_after_the_last_query() -> None:
    executor = SekibanExecutor(bank_domain(), InMemoryEventStore())
    keys = await open_account(executor, deposit=5)
    assert (await executor.query(ActiveAccountsQuery())).total_count == 1
    await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=5))
    await open_account(executor)
    result = await executor.query(ActiveAccountsQuery())
    assert result.total_count == 2
    assert result.items[0].payload.balance == 10  # type: ignore[attr-defined]
