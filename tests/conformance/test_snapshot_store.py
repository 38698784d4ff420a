"""What every snapshot store guarantees. Runs once per backend in `backends.py`."""

from __future__ import annotations

from datetime import UTC, datetime

from sekiban import PartitionKeys, Serializer
from sekiban.snapshot import AggregateSnapshot, SnapshotSigning, take_snapshot
from sekiban.stores import SnapshotStore
from tests.conformance.backends import Stores
from tests.unit.domain import account_at


def snapshot_at(
    keys: PartitionKeys, version: int, compress_above: int | None = None
) -> AggregateSnapshot:
    from examples.bank import bank_domain

    return take_snapshot(
        account_at(keys, version, balance=version * 10),
        Serializer(bank_domain()),
        taken_at=datetime(2026, 1, 1, tzinfo=UTC),
        events_since_previous=version,
        compress_above=compress_above,
    )


async def test_saved_snapshot_is_returned_unchanged(stores: Stores) -> None:
    _, snapshots = stores
    keys = PartitionKeys.generate("account")
    snapshot = snapshot_at(keys, 5)
    assert await snapshots.save(snapshot)
    assert await snapshots.get(keys, "account") == snapshot


async def test_compressed_snapshot_round_trips(stores: Stores) -> None:
    _, snapshots = stores
    keys = PartitionKeys.generate("account")
    snapshot = snapshot_at(keys, 5, compress_above=0)
    await snapshots.save(snapshot)
    assert await snapshots.get(keys, "account") == snapshot


async def test_missing_snapshot_is_none(stores: Stores) -> None:
    _, snapshots = stores
    assert await snapshots.get(PartitionKeys.generate(), "account") is None


async def test_newer_snapshot_replaces_older(stores: Stores) -> None:
    _, snapshots = stores
    keys = PartitionKeys.generate("account")
    await snapshots.save(snapshot_at(keys, 5))
    assert await snapshots.save(snapshot_at(keys, 9))
    stored = await snapshots.get(keys, "account")
    assert stored is not None and stored.version == 9


async def test_older_snapshot_never_replaces_newer(stores: Stores) -> None:
    _, snapshots = stores
    keys = PartitionKeys.generate("account")
    await snapshots.save(snapshot_at(keys, 9))
    assert not await snapshots.save(snapshot_at(keys, 5))
    stored = await snapshots.get(keys, "account")
    assert stored is not None and stored.version == 9


async def test_snapshots_are_per_aggregate_and_projector(stores: Stores) -> None:
    _, snapshots = stores
    a, b = PartitionKeys.generate("account"), PartitionKeys.generate("account")
    await snapshots.save(snapshot_at(a, 3))
    await snapshots.save(snapshot_at(b, 7))
    got_a, got_b = await snapshots.get(a, "account"), await snapshots.get(b, "account")
    assert got_a is not None and got_a.version == 3
    assert got_b is not None and got_b.version == 7
    assert await snapshots.get(a, "other-projector") is None


async def test_deleted_snapshot_is_gone(stores: Stores) -> None:
    _, snapshots = stores
    keys = PartitionKeys.generate("account")
    await snapshots.save(snapshot_at(keys, 3))
    await snapshots.delete(keys, "account")
    assert await snapshots.get(keys, "account") is None
    await snapshots.delete(keys, "account")  # deleting nothing is fine


async def assert_signed_snapshots_round_trip(snapshots: SnapshotStore) -> None:
    """Signed snapshots, plain and compressed, come back with their signature."""
    keys = PartitionKeys.generate("account")
    for version, compress_above in ((3, None), (5, 0)):
        signed = SnapshotSigning("k1", b"k" * 32).sign(snapshot_at(keys, version, compress_above))
        assert signed.metadata.signature is not None
        await snapshots.save(signed)
        assert await snapshots.get(keys, "account") == signed


async def test_signed_snapshot_round_trips_with_its_signature(stores: Stores) -> None:
    await assert_signed_snapshots_round_trip(stores[1])
