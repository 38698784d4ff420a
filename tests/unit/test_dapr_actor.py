"""DaprAggregateActor through the SDK's actor runtime, in process (no sidecar)."""

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from examples.bank import (
    AccountProjector,
    ActiveAccount,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
    bank_domain,
)
from sekiban import (
    EventMetadata,
    InvalidPartitionKeysError,
    PartitionKeys,
    SekibanExecutor,
    SerializationError,
    StoreAuthenticationError,
    StoreConnectionError,
    StoredEvent,
)
from sekiban.dapr import messages
from sekiban.dapr.actor import actor_id_for, parse_actor_id
from sekiban.errors import RemoteCommandError
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import InMemoryEventStore
from sekiban.testing.actors import ActorHarness
from tests.support import LostReplyStore, stored_events


class CountingEventStore(InMemoryEventStore):
    """A real in-memory store that counts stream reads."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_reads = 0

    async def read_stream(  # type: ignore[override]
        self, partition_keys: PartitionKeys, after_version: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        self.stream_reads += 1
        async for batch in super().read_stream(partition_keys, after_version, batch_size):
            yield batch


def harness(count: int = 10, store: InMemoryEventStore | None = None) -> ActorHarness:
    return ActorHarness(
        bank_domain(), store, snapshot_config=SnapshotConfiguration(count_threshold=count)
    )


async def open_with_deposits(h: ActorHarness, deposits: int) -> PartitionKeys:
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(deposits):
        await h.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    return keys


def test_actor_ids_round_trip_and_avoid_route_breaking_characters() -> None:
    keys = PartitionKeys.generate("account", "tenant-1")
    actor_id = actor_id_for("account", keys)
    assert not set(actor_id) & set("/\\#?. ")
    assert parse_actor_id(actor_id) == ("account", keys)
    for bad in ["", "account", ":default@account@x", "account:nope"]:
        with pytest.raises(InvalidPartitionKeysError):
            parse_actor_id(bad)


async def test_command_round_trip_through_the_actor() -> None:
    h = harness()
    keys = await open_with_deposits(h, 3)
    loaded = await h.load(AccountProjector, keys)
    assert loaded.aggregate.version == 4
    assert loaded.aggregate.payload == ActiveAccount(owner="ann", balance=3, transactions=3)


async def test_snapshot_lands_in_actor_state_after_n_events() -> None:
    h = harness(count=10)
    keys = await open_with_deposits(h, 24)
    snapshot = h.stored_snapshot(AccountProjector, keys)
    assert snapshot is not None and snapshot.version == 20


async def test_warm_actor_reads_no_events_for_a_command() -> None:
    store = CountingEventStore()
    h = harness(store=store)
    keys = await open_with_deposits(h, 5)
    reads = store.stream_reads
    await h.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    assert store.stream_reads == reads


async def test_reactivation_loads_snapshot_plus_delta() -> None:
    h = harness(count=10)
    keys = await open_with_deposits(h, 14)  # version 15, snapshot at 10
    actor = h.active_actor(AccountProjector, keys)
    assert actor is not None and actor.state is not None
    assert actor.state.snapshot_version == 10
    # daprd refuses state writes during deactivation: the snapshot stays at 10.
    await h.deactivate(AccountProjector, keys)
    assert h.stored_snapshot(AccountProjector, keys).version == 10  # type: ignore[union-attr]
    other = SekibanExecutor(bank_domain(), h.event_store)
    for _ in range(3):
        await other.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    loaded = await h.load(AccountProjector, keys)
    stats = loaded.statistics
    assert stats.from_snapshot and stats.snapshot_version == 10 and stats.events_replayed == 8
    assert loaded.aggregate.version == 18


async def test_a_quiet_aggregate_is_snapshotted_by_the_flush_timer_before_it_idles_out() -> None:
    h = harness(count=10)
    keys = await open_with_deposits(h, 14)  # version 15, snapshot at 10
    await h.fire_timers()  # a command ran during this tick: not quiet yet
    assert h.stored_snapshot(AccountProjector, keys).version == 10  # type: ignore[union-attr]
    await h.fire_timers()  # a whole tick without a command
    assert h.stored_snapshot(AccountProjector, keys).version == 15  # type: ignore[union-attr]
    await h.deactivate(AccountProjector, keys)
    loaded = await h.load(AccountProjector, keys)
    assert loaded.statistics.snapshot_version == 15 and loaded.statistics.events_replayed == 0


async def test_conflict_with_another_writer_is_caught_up_and_retried() -> None:
    h = harness()
    keys = await open_with_deposits(h, 2)
    other = SekibanExecutor(bank_domain(), h.event_store)
    await other.command(DepositMoney(account_id=keys.aggregate_id, amount=100))
    response = await h.command(WithdrawMoney(account_id=keys.aggregate_id, amount=50))
    assert response.version == 5
    aggregate = await h.load_aggregate(AccountProjector, keys)
    assert aggregate.payload == ActiveAccount(owner="ann", balance=52, transactions=4)


async def test_concurrent_clients_on_one_actor_lose_nothing() -> None:
    h = harness()
    keys = await open_with_deposits(h, 0)
    await asyncio.gather(
        *(h.command(DepositMoney(account_id=keys.aggregate_id, amount=1)) for _ in range(50))
    )
    aggregate = await h.load_aggregate(AccountProjector, keys)
    assert aggregate.version == 51
    assert aggregate.payload == ActiveAccount(owner="ann", balance=50, transactions=50)


async def test_refused_command_is_a_typed_reply_and_saves_nothing() -> None:
    h = harness(count=1)
    keys = await open_with_deposits(h, 1)
    before = h.actor_client.state.copy()
    with pytest.raises(RemoteCommandError) as error:
        await h.command(WithdrawMoney(account_id=keys.aggregate_id, amount=5))
    assert error.value.error_type == "InsufficientFundsError"
    with pytest.raises(RemoteCommandError, match="AggregateStateError"):
        await h.command(OpenAccount(owner="x", account_id=keys.aggregate_id))
    assert h.actor_client.state == before
    assert (await h.load_aggregate(AccountProjector, keys)).version == 2


async def test_date_and_duration_like_strings_survive_the_actor_hop() -> None:
    h = harness()
    for owner in ["2024-01-01", "2024-01-01T10:00:00", "10s", "1h30m"]:
        keys = (await h.command(OpenAccount(owner=owner))).partition_keys
        aggregate = await h.load_aggregate(AccountProjector, keys)
        assert aggregate.payload == ActiveAccount(owner=owner)


async def test_timer_snapshots_a_quiet_aggregate_once_the_interval_passed() -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    h = ActorHarness(
        bank_domain(),
        snapshot_config=SnapshotConfiguration(strategy="time", time_interval_ms=60_000),
        clock=lambda: now[0],
    )
    keys = await open_with_deposits(h, 5)  # never snapshotted: overdue at version 1
    assert h.stored_snapshot(AccountProjector, keys).version == 1  # type: ignore[union-attr]
    assert await h.fire_timers() == 1
    assert h.stored_snapshot(AccountProjector, keys).version == 1  # type: ignore[union-attr]
    now[0] += timedelta(seconds=61)
    await h.fire_timers()
    assert h.stored_snapshot(AccountProjector, keys).version == 6  # type: ignore[union-attr]


async def test_a_retried_command_is_applied_once_even_after_a_restart() -> None:
    from sekiban import EventMetadata

    h = harness()
    keys = await open_with_deposits(h, 1)
    once = EventMetadata(causation_id="cmd-42", correlation_id="c")
    first = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=10), once)
    again = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=10), once)
    assert again == first and first.version == 3
    await h.deactivate(AccountProjector, keys)  # the host restarts: memory is gone
    after_restart = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=10), once)
    assert after_restart == first
    aggregate = await h.load_aggregate(AccountProjector, keys)
    assert aggregate.version == 3
    assert aggregate.payload == ActiveAccount(owner="ann", balance=11, transactions=2)
    fresh = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=10))
    assert fresh.version == 4


def other_spellings(keys: PartitionKeys) -> list[str]:
    """Actor ids that name the aggregate `keys` but are not its canonical id."""
    root, group, uid = keys.root_partition_key, keys.group, keys.aggregate_id
    return [
        f"account:{root}@{group}@{str(uid).upper()}",
        f"account:{root}@{group}@{uid.hex}",
        f"account:{root}@{group}@{{{uid}}}",
        f"account:{root}@{group}@urn:uuid:{uid}",
        f"account:{root}@{group}@ {uid}",
        f"account:{root}@{group}@{uid} ",
        f"account:{root.upper()}@{group}@{uid}",
    ]


async def test_an_aggregate_has_one_actor_and_other_spellings_of_its_id_are_refused() -> None:
    h = harness()
    keys = await open_with_deposits(h, 1)
    deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)
    body = messages.command_request(h.serializer, deposit, EventMetadata("by-alias", "c"))

    for alias in other_spellings(keys):
        with pytest.raises(InvalidPartitionKeysError):
            await h._call(alias, "ExecuteCommand", body)

    assert list(h.manager._active_actors) == [actor_id_for("account", keys)]
    events = [e async for batch in h.event_store.read_stream(keys) for e in batch]
    assert [e.version for e in events] == [1, 2]


async def test_a_reply_lost_by_the_store_is_found_on_catch_up_and_applied_once() -> None:
    store = LostReplyStore(InMemoryEventStore(), lambda cause: cause == "deposit-1")
    h = ActorHarness(bank_domain(), store)  # type: ignore[arg-type]
    keys = await open_with_deposits(h, 0)
    deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)

    first = await h.command(deposit, command_id="deposit-1")
    again = await h.command(deposit, command_id="deposit-1")

    assert store.lost == ["deposit-1"]
    assert first == again and first.version == 2
    aggregate = await h.load_aggregate(AccountProjector, keys)
    assert aggregate.payload == ActiveAccount(owner="ann", balance=5, transactions=1)


class FailingOnceStore(InMemoryEventStore):
    """Once armed with `error`: another writer deposits 1, then the append fails with
    `error` without writing, so the stream has moved when the actor looks again."""

    def __init__(self) -> None:
        super().__init__()
        self.error: Exception | None = None
        self.appends = 0

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        self.appends += 1
        error, self.error = self.error, None
        if error is not None:
            rival = stored_events(events[0].partition_keys, expected_version + 1, 1)
            await super().append(rival, expected_version)
            raise error
        await super().append(events, expected_version, command_id=command_id)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RuntimeError("disk on fire"), False),
        (SerializationError("unwritable"), False),
        (StoreAuthenticationError("password rotated"), False),
        (StoreConnectionError("connection reset"), True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
async def test_the_actor_retries_conflicts_and_unknown_outcomes_only(
    error: Exception, retried: bool
) -> None:
    store = FailingOnceStore()
    h = harness(store=store)
    keys = await open_with_deposits(h, 0)
    store.error, store.appends = error, 0

    if retried:
        response = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5))
        assert response.version == 3
    else:
        with pytest.raises(RemoteCommandError, match=type(error).__name__):
            await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5))
    assert store.appends == (2 if retried else 1)


async def test_a_resend_is_answered_however_many_commands_came_after_it() -> None:
    h = harness(count=1000)
    keys = await open_with_deposits(h, 0)
    deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)
    first = await h.command(deposit, command_id="deposit-1")
    for _ in range(250):  # more than the old in-memory cache of replies held (200)
        await h.command(DepositMoney(account_id=keys.aggregate_id, amount=1))

    again = await h.command(deposit, command_id="deposit-1")

    assert again == first and first.version == 2
    assert (await h.load_aggregate(AccountProjector, keys)).version == 252
