"""`verify_store` on every store: a clean store passes; each planted fault is found."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from examples.bank import AccountProjector, DepositMoney, bank_domain
from sekiban import DomainTypes, EventPayload, PartitionKeys
from sekiban.snapshot import AggregateSnapshot
from sekiban.verify import ProblemKind, verify_store
from tests.conformance.backends import Stores
from tests.support import bank_account_with_snapshot, forged, stored_events


async def replace_snapshot(
    stores: Stores, change: Callable[[AggregateSnapshot], AggregateSnapshot]
) -> None:
    """A bank account of 5 events snapshotted at 4, whose stored snapshot is then
    replaced by `change(snapshot)`."""
    events, snapshots = stores
    _, keys = await bank_account_with_snapshot(events, snapshots, events=5, every=4)
    snapshot = await snapshots.get(keys, AccountProjector.name)
    assert snapshot is not None
    await snapshots.delete(keys, AccountProjector.name)
    await snapshots.save(change(snapshot))


async def test_a_clean_store_verifies(stores: Stores) -> None:
    events, snapshots = stores
    await bank_account_with_snapshot(events, snapshots, events=10, every=4)
    await bank_account_with_snapshot(events, snapshots, events=3, every=4)
    report = await verify_store(events, bank_domain(), snapshot_store=snapshots)
    assert report.ok, report.problems
    assert (report.events, report.streams, report.replayed_streams) == (13, 2, 2)
    assert report.snapshots == 1


async def test_an_undecodable_payload_is_reported_with_its_stream_and_version(
    stores: Stores,
) -> None:
    events, snapshots = stores
    _, keys = await bank_account_with_snapshot(events, snapshots, events=3, every=100)
    # Stores keep what they are given: this is the row a damaged or foreign writer leaves.
    await events.append(stored_events(keys, 4, 1, payload='{"amount": "lots"}'), 3)
    await events.append(stored_events(keys, 5, 1), 4)
    report = await verify_store(events, bank_domain(), snapshot_store=snapshots)
    assert not report.ok
    [problem] = report.problems
    assert (problem.kind, problem.partition_keys, problem.version) == (
        ProblemKind.UNDECODABLE,
        str(keys),
        4,
    )
    assert problem.event_type == "MoneyDeposited"
    assert report.replayed_streams == 0  # replay stops at the bad event; the scan goes on
    assert report.events == 5


async def test_an_unknown_event_type_is_reported(stores: Stores) -> None:
    events, _ = stores
    keys = PartitionKeys.generate("account")
    await events.append(stored_events(keys, 1, 1, event_type="NoSuchEvent"), 0)
    report = await verify_store(events, bank_domain())
    assert [(p.kind, p.event_type) for p in report.problems] == [
        (ProblemKind.UNDECODABLE, "NoSuchEvent")
    ]


class Deposit(EventPayload):
    """MoneyDeposited at schema version 2: the amount in cents."""

    cents: int
    schema_version = 2


def cents_domain() -> DomainTypes:
    domain = DomainTypes(Deposit)

    @domain.upcaster(Deposit, from_version=1)
    def to_cents(data: dict[str, Any]) -> dict[str, Any]:
        return {"cents": int(data["amount"]) * 100}

    return domain


async def test_an_upcaster_failure_is_reported_apart_from_undecodable_events(
    stores: Stores,
) -> None:
    events, _ = stores
    keys = PartitionKeys.generate("ledger")
    await events.append(stored_events(keys, 1, 2, event_type="Deposit"), 0)
    await events.append(stored_events(keys, 3, 1, event_type="Deposit", payload='{"x": 1}'), 2)
    report = await verify_store(events, cents_domain())
    assert [(p.kind, p.version) for p in report.problems] == [(ProblemKind.UPCAST_FAILED, 3)]
    assert report.unprojected_groups == {"ledger"}


async def test_a_corrupt_snapshot_is_reported(stores: Stores) -> None:
    events, snapshots = stores
    await replace_snapshot(
        stores, lambda snapshot: dataclasses.replace(snapshot, payload=b'{"owner": "x"}')
    )
    report = await verify_store(events, bank_domain(), snapshot_store=snapshots)
    [problem] = report.problems
    assert problem.kind is ProblemKind.BAD_SNAPSHOT and "corrupt" in problem.detail


async def test_a_forged_snapshot_that_differs_from_replay_is_reported(stores: Stores) -> None:
    events, snapshots = stores
    await replace_snapshot(stores, forged)
    report = await verify_store(events, bank_domain(), snapshot_store=snapshots)
    assert [p.kind for p in report.problems] == [ProblemKind.SNAPSHOT_DIFFERS]


async def test_a_snapshot_ahead_of_its_stream_is_reported(stores: Stores) -> None:
    events, snapshots = stores
    await replace_snapshot(stores, lambda snapshot: dataclasses.replace(snapshot, version=9))
    report = await verify_store(events, bank_domain(), snapshot_store=snapshots)
    [problem] = report.problems
    assert problem.kind is ProblemKind.BAD_SNAPSHOT and "ahead-of-stream" in problem.detail


async def test_a_snapshot_of_an_older_projector_version_is_stale_not_a_problem(
    stores: Stores,
) -> None:
    events, snapshots = stores

    def older(snapshot: AggregateSnapshot) -> AggregateSnapshot:
        metadata = dataclasses.replace(snapshot.metadata, projector_version="0")
        return dataclasses.replace(snapshot, metadata=metadata)

    await replace_snapshot(stores, older)
    report = await verify_store(events, bank_domain(), snapshot_store=snapshots)
    assert report.ok and report.stale_snapshots == 1


async def test_one_stream_is_verified_alone(stores: Stores) -> None:
    events, snapshots = stores
    keys = PartitionKeys.generate("account")
    await events.append(stored_events(keys, 1, 1, event_type="NoSuchEvent"), 0)
    executor, good = await bank_account_with_snapshot(events, snapshots, events=2, every=100)
    await executor.command(DepositMoney(account_id=good.aggregate_id, amount=5))
    report = await verify_store(events, bank_domain(), stream=good)
    assert report.ok and (report.events, report.streams) == (3, 1)
    assert not (await verify_store(events, bank_domain(), stream=keys)).ok
