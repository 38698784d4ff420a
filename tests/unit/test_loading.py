import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from examples.bank import (
    AccountProjector,
    ActiveAccount,
    DepositMoney,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    EventStreamCorruptError,
    PartitionKeys,
    SekibanExecutor,
    Serializer,
)
from sekiban.errors import InvalidReadError
from sekiban.snapshot import (
    AggregateSnapshot,
    EventReplayOptimizer,
    RejectionReason,
    SnapshotConfiguration,
    take_snapshot,
)
from sekiban.stores import InMemoryEventStore, InMemorySnapshotStore

DOMAIN = bank_domain()
SERIALIZER = Serializer(DOMAIN)
PROJECTOR = DOMAIN.projector(AccountProjector)


async def account_with(events: int) -> tuple[InMemoryEventStore, PartitionKeys]:
    """A store holding one account: opened, then `events - 1` deposits of 1."""
    executor = SekibanExecutor(DOMAIN)
    keys = (await executor.command(OpenAccount(owner="alice"))).partition_keys
    for _ in range(events - 1):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    assert isinstance(executor.event_store, InMemoryEventStore)
    return executor.event_store, keys


async def snapshot_at(
    store: InMemoryEventStore, keys: PartitionKeys, version: int
) -> AggregateSnapshot:
    optimizer = EventReplayOptimizer(store, SERIALIZER)
    aggregate, _ = await optimizer.catch_up(PROJECTOR, PROJECTOR.empty_aggregate(keys))
    events = [SERIALIZER.to_event(e) async for b in store.read_stream(keys) for e in b]
    at_version = PROJECTOR.fold(PROJECTOR.empty_aggregate(keys), events[:version])
    assert aggregate.version >= version
    return take_snapshot(
        at_version, SERIALIZER, taken_at=datetime.now(UTC), events_since_previous=version
    )


async def load(store: InMemoryEventStore, keys: PartitionKeys, snapshot: AggregateSnapshot | None):  # type: ignore[no-untyped-def]
    snapshots = InMemorySnapshotStore()
    if snapshot is not None:
        await snapshots.save(snapshot)
    return await EventReplayOptimizer(store, SERIALIZER, snapshots).load(PROJECTOR, keys)


async def test_load_with_snapshot_replays_only_later_events() -> None:
    store, keys = await account_with(100)
    result = await load(store, keys, await snapshot_at(store, keys, 95))
    stats = result.statistics
    assert stats.from_snapshot and stats.snapshot_version == 95 and stats.events_replayed == 5
    assert result.aggregate.version == 100
    assert result.aggregate.payload == ActiveAccount(owner="alice", balance=99, transactions=99)


async def test_load_without_snapshot_replays_everything() -> None:
    store, keys = await account_with(20)
    result = await load(store, keys, None)
    assert not result.statistics.from_snapshot
    assert result.statistics.events_replayed == 20 and result.statistics.rejection is None


async def test_up_to_date_snapshot_replays_nothing() -> None:
    store, keys = await account_with(30)
    result = await load(store, keys, await snapshot_at(store, keys, 30))
    assert result.statistics.from_snapshot and result.statistics.events_replayed == 0
    assert result.aggregate.version == 30


async def test_snapshot_ahead_of_the_stream_is_discarded(caplog: pytest.LogCaptureFixture) -> None:
    store, keys = await account_with(10)
    bigger, other_keys = await account_with(20)
    ahead = dataclasses.replace(await snapshot_at(bigger, other_keys, 15), partition_keys=keys)
    with caplog.at_level(logging.WARNING, "sekiban.snapshot"):
        result = await load(store, keys, ahead)
    assert result.statistics.rejection is not None
    assert result.statistics.rejection.reason is RejectionReason.AHEAD_OF_STREAM
    assert not result.statistics.from_snapshot and result.aggregate.version == 10
    assert "discarded" in caplog.text


async def test_snapshot_of_another_history_is_discarded() -> None:
    store, keys = await account_with(10)
    other, other_keys = await account_with(10)
    foreign = dataclasses.replace(await snapshot_at(other, other_keys, 5), partition_keys=keys)
    result = await load(store, keys, foreign)
    assert result.statistics.rejection is not None
    assert result.statistics.rejection.reason is RejectionReason.STREAM_MISMATCH
    assert result.aggregate == (await load(store, keys, None)).aggregate


async def test_incompatible_snapshot_is_discarded_and_replayed() -> None:
    store, keys = await account_with(10)
    snapshot = await snapshot_at(store, keys, 8)
    stale = dataclasses.replace(
        snapshot, metadata=dataclasses.replace(snapshot.metadata, projector_version="0")
    )
    result = await load(store, keys, stale)
    assert result.statistics.rejection is not None
    assert result.statistics.rejection.reason is RejectionReason.PROJECTOR_VERSION
    assert result.statistics.events_replayed == 10


async def test_gap_in_the_stream_is_an_error_not_a_silent_skip() -> None:
    store, keys = await account_with(10)
    del store._streams[keys][6]  # damage storage: version 7 disappears
    with pytest.raises(EventStreamCorruptError, match="6 to 8"):
        await load(store, keys, None)


class _BrokenSnapshots(InMemorySnapshotStore):
    async def get(self, partition_keys: PartitionKeys, projector_name: str) -> None:
        raise ConnectionError("snapshot database down")

    async def save(self, snapshot: AggregateSnapshot) -> bool:
        raise ConnectionError("snapshot database down")


async def test_unreachable_snapshot_store_falls_back_to_replay() -> None:
    store, keys = await account_with(5)
    result = await EventReplayOptimizer(store, SERIALIZER, _BrokenSnapshots()).load(PROJECTOR, keys)
    assert result.aggregate.version == 5
    assert result.statistics.rejection is not None
    assert result.statistics.rejection.reason is RejectionReason.UNREADABLE


async def test_executor_snapshots_per_strategy_after_commit() -> None:
    snapshots = InMemorySnapshotStore()
    executor = SekibanExecutor(
        DOMAIN, snapshot_store=snapshots, snapshot_config=SnapshotConfiguration(count_threshold=10)
    )
    keys = (await executor.command(OpenAccount(owner="a"))).partition_keys
    for _ in range(24):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    stored = await snapshots.get(keys, "account")
    assert stored is not None and stored.version == 20
    assert stored.metadata.events_since_previous == 10
    assert executor.snapshots.taken == 2
    loaded = await executor.load(AccountProjector, keys)
    assert loaded.statistics.snapshot_version == 20 and loaded.statistics.events_replayed == 5


async def test_failed_snapshot_save_is_counted_and_never_fails_the_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor = SekibanExecutor(
        DOMAIN,
        snapshot_store=_BrokenSnapshots(),
        snapshot_config=SnapshotConfiguration(count_threshold=1),
    )
    with caplog.at_level(logging.ERROR, "sekiban"):
        response = await executor.command(OpenAccount(owner="a"))
    assert response.version == 1
    assert executor.snapshots.failed == 1 and executor.snapshots.taken == 0
    assert "snapshot of" in caplog.text
    aggregate = await executor.load_aggregate(AccountProjector, response.partition_keys)
    assert aggregate.version == 1


async def test_expensive_load_triggers_a_snapshot() -> None:
    snapshots = InMemorySnapshotStore()
    store, keys = await account_with(300)
    executor = SekibanExecutor(
        DOMAIN,
        store,
        snapshot_store=snapshots,
        snapshot_config=SnapshotConfiguration.preset("load-cost"),
    )
    await executor.load_aggregate(AccountProjector, keys)
    stored = await snapshots.get(keys, "account")
    assert stored is not None and stored.version == 300
    again = await executor.load(AccountProjector, keys)
    assert again.statistics.events_replayed == 0


def test_an_optimizer_reading_batches_of_no_events_is_refused_at_once() -> None:
    with pytest.raises(InvalidReadError, match="batch_size"):
        EventReplayOptimizer(InMemoryEventStore(), Serializer(bank_domain()), batch_size=0)
