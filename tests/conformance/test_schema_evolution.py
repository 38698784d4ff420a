"""History written by an old release of a domain is read by the new one, on every store.

Fields were added, removed, renamed, split and retyped, and an event type renamed
(tests/evolving_domain.py); the old release's snapshot is rebuilt as schema-changed.
"""

from __future__ import annotations

from sekiban import PartitionKeys, SekibanExecutor
from sekiban.snapshot import RejectionReason, SnapshotConfiguration
from tests.conformance.backends import Stores
from tests.evolving_domain import (
    Award,
    Member,
    MemberProjector,
    OldEarn,
    OldJoin,
    OldMemberProjector,
    new_domain,
    old_domain,
)

EVERY_3 = SnapshotConfiguration(count_threshold=3)


async def write_old_history(stores: Stores) -> PartitionKeys:
    event_store, snapshot_store = stores
    old = SekibanExecutor(
        old_domain(), event_store, snapshot_store=snapshot_store, snapshot_config=EVERY_3
    )
    keys = (await old.command(OldJoin(full_name="Ann Lee", referrer="bob"))).partition_keys
    for amount, note in [("5", "signup"), ("7", "review"), ("1", "login")]:
        await old.command(OldEarn(member_id=keys.aggregate_id, amount=amount, note=note))
    snapshot = await snapshot_store.get(keys, OldMemberProjector.name)
    assert snapshot is not None and snapshot.version == 3
    return keys


EXPECTED = Member(
    first_name="Ann",
    last_name="Lee",
    tier="basic",
    points=13,
    reasons=("signup", "review", "login"),
)


async def test_new_release_reads_old_history_and_rebuilds_the_old_snapshot(
    stores: Stores,
) -> None:
    event_store, snapshot_store = stores
    keys = await write_old_history(stores)
    new = SekibanExecutor(
        new_domain(), event_store, snapshot_store=snapshot_store, snapshot_config=EVERY_3
    )

    loaded = await new.load(MemberProjector, keys)
    assert loaded.aggregate.payload == EXPECTED
    rejection = loaded.statistics.rejection
    assert rejection is not None and rejection.reason is RejectionReason.SCHEMA_CHANGED
    rebuilt = await snapshot_store.get(keys, MemberProjector.name)
    assert rebuilt is not None and rebuilt.metadata.schema_fingerprint
    assert rebuilt.metadata.schema_fingerprint == new.domain.schema_fingerprint()

    response = await new.command(Award(member_id=keys.aggregate_id, points=2, reason="promo"))
    assert response.version == 5
    again = await new.load(MemberProjector, keys)
    assert again.statistics.from_snapshot and again.statistics.rejection is None
    assert again.aggregate.payload == EXPECTED.evolve(
        points=15, reasons=(*EXPECTED.reasons, "promo")
    )
    # New events are written at the current schema version, old ones stay as they were.
    stored = [e async for batch in event_store.read_stream(keys) for e in batch]
    assert [e.event_type for e in stored] == [
        "MemberJoined",
        "PointsEarned",
        "PointsEarned",
        "PointsEarned",
        "PointsAwarded@2",
    ]


async def test_old_history_reads_the_same_without_snapshots(stores: Stores) -> None:
    event_store, _ = stores
    keys = await write_old_history(stores)
    aggregate = await SekibanExecutor(new_domain(), event_store).load_aggregate(
        MemberProjector, keys
    )
    assert aggregate.payload == EXPECTED and aggregate.version == 4
