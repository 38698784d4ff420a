"""Event schema versions, upcasters, renamed types, and snapshots that follow them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import (
    ConfigurationError,
    DomainTypes,
    EventPayload,
    PartitionKeys,
    SekibanExecutor,
    SerializationError,
    SortableUniqueId,
    StoredEvent,
)
from sekiban.core.serialization import Serializer
from sekiban.snapshot import RejectionReason, SnapshotConfiguration
from sekiban.stores import InMemorySnapshotStore
from sekiban.testing.actors import ActorHarness
from tests.evolving_domain import (
    Award,
    Member,
    MemberJoined,
    MemberProjector,
    OldEarn,
    OldJoin,
    OldMemberProjector,
    PointsAwarded,
    new_domain,
    old_domain,
)


def stored(event_type: str, payload: str) -> StoredEvent:
    return StoredEvent(
        str(uuid.uuid4()),
        str(SortableUniqueId.generate()),
        1,
        PartitionKeys.generate("member"),
        event_type,
        payload,
        datetime.now(UTC),
    )


def read(domain: DomainTypes, event_type: str, payload: str) -> EventPayload:
    return Serializer(domain).to_event(stored(event_type, payload)).payload


# --- each kind of change ------------------------------------------------------------


def test_an_added_field_with_a_default_reads_old_events() -> None:
    class Joined(EventPayload):
        name: str
        tier: str = "basic"

    assert read(DomainTypes(Joined), "Joined", '{"name": "ann"}') == Joined(name="ann")


def test_a_removed_field_is_dropped_unless_the_type_forbids_it() -> None:
    class Joined(EventPayload):
        name: str

    class Strict(EventPayload):
        read_extra = "forbid"
        name: str

    old = '{"name": "ann", "referrer": "bob"}'
    assert read(DomainTypes(Joined), "Joined", old) == Joined(name="ann")
    with pytest.raises(SerializationError, match="referrer"):
        read(DomainTypes(Strict), "Strict", old)


def test_a_renamed_field_is_moved_by_an_upcaster() -> None:
    class Joined(EventPayload):
        schema_version = 2
        display_name: str

    domain = DomainTypes(Joined)

    @domain.upcaster(Joined, 1)
    def rename(data: dict[str, Any]) -> dict[str, Any]:
        data["display_name"] = data.pop("name")
        return data

    assert read(domain, "Joined", '{"name": "ann"}') == Joined(display_name="ann")
    assert read(domain, "Joined@2", '{"display_name": "bo"}') == Joined(display_name="bo")


def test_a_renamed_event_type_reads_under_its_old_name_and_writes_under_the_new() -> None:
    class Awarded(EventPayload):
        points: int

    domain = DomainTypes().alias(Awarded, "Earned")
    assert read(domain, "Earned", '{"points": 3}') == Awarded(points=3)
    assert domain.stored_event_names[Awarded] == "Awarded"
    assert domain.event_name(Awarded) == "Awarded"


def test_a_value_is_split_and_another_retyped_across_two_versions() -> None:
    class Joined(EventPayload):
        schema_version = 3
        first: str
        last: str
        age: int

    domain = DomainTypes(Joined)
    domain.add_upcaster(
        Joined,
        1,
        lambda d: dict(zip(("first", "last"), d["name"].split(" "), strict=True), age=d["age"]),
    )
    domain.add_upcaster(Joined, 2, lambda d: {**d, "age": int(d["age"])})
    assert read(domain, "Joined", '{"name": "Ann Lee", "age": "41"}') == Joined(
        first="Ann", last="Lee", age=41
    )
    assert read(domain, "Joined@2", '{"first": "Bo", "last": "Wu", "age": "7"}').age == 7  # type: ignore[attr-defined]


def test_new_events_are_written_at_the_current_version_and_read_back() -> None:
    serializer = Serializer(new_domain())
    event = serializer.to_event(stored("MemberJoined@2", '{"first_name": "a", "last_name": "b"}'))
    assert serializer.to_stored(event).event_type == "MemberJoined@2"
    assert serializer.to_event(serializer.to_stored(event)) == event


# --- chains are checked --------------------------------------------------------------


class Versioned(EventPayload):
    schema_version = 3
    value: int


def _same(data: dict[str, Any]) -> dict[str, Any]:
    return data


def test_an_upcaster_chain_with_a_gap_is_refused() -> None:
    domain = DomainTypes(Versioned)
    domain.add_upcaster(Versioned, 2, _same)
    with pytest.raises(ConfigurationError, match="1 -> 2"):
        domain.validate()
    with pytest.raises(ConfigurationError, match="1 -> 2"):
        Serializer(domain)


def test_a_chain_that_does_not_reach_the_current_version_is_refused() -> None:
    domain = DomainTypes(Versioned)
    domain.add_upcaster(Versioned, 1, _same)
    with pytest.raises(ConfigurationError, match="2 -> 3"):
        domain.validate()


def test_a_duplicate_or_out_of_range_upcaster_is_refused_at_registration() -> None:
    domain = DomainTypes(Versioned)
    domain.add_upcaster(Versioned, 1, _same)
    with pytest.raises(ConfigurationError, match="two upcasters"):
        domain.add_upcaster(Versioned, 1, _same)
    for step in (0, 3):
        with pytest.raises(ConfigurationError, match="steps run from 1 to 2"):
            domain.add_upcaster(Versioned, step, _same)


def test_event_names_cannot_contain_the_version_marker() -> None:
    with pytest.raises(ConfigurationError, match="'@'"):
        DomainTypes().register_as(Versioned, "Versioned@2")


# --- what cannot be read says why -----------------------------------------------------


def test_an_event_from_a_newer_release_or_a_failing_upcaster_names_the_event() -> None:
    domain = new_domain()
    newer = stored("MemberJoined@3", '{"first_name": "a", "last_name": "b"}')
    with pytest.raises(SerializationError, match=rf"{newer.id}.*schema version 3"):
        Serializer(domain).to_event(newer)
    broken = stored("PointsEarned", '{"amount": "many", "note": "x"}')
    with pytest.raises(SerializationError, match=rf"{broken.id}.*upcasting from version 1"):
        Serializer(domain).to_event(broken)


def test_an_upcaster_returning_non_json_data_is_a_serialization_error() -> None:
    domain = DomainTypes(Versioned)
    domain.add_upcaster(Versioned, 1, lambda d: {**d, "value": datetime.now(UTC)})
    domain.add_upcaster(Versioned, 2, _same)
    with pytest.raises(SerializationError, match="not plain JSON"):
        read(domain, "Versioned", '{"value": 1}')


# --- snapshots follow the schema ---------------------------------------------------------


def test_the_fingerprint_is_empty_until_a_schema_evolves_and_changes_with_each_step() -> None:
    assert bank_domain().schema_fingerprint() == ""
    renamed = DomainTypes().alias(MemberJoined, "Joined")
    assert renamed.schema_fingerprint() not in ("", new_domain().schema_fingerprint())
    assert new_domain().schema_fingerprint() == new_domain().schema_fingerprint()


async def test_a_snapshot_taken_before_a_schema_change_is_rebuilt() -> None:
    snapshots = InMemorySnapshotStore()
    config = SnapshotConfiguration(count_threshold=2)
    old = SekibanExecutor(old_domain(), snapshot_store=snapshots, snapshot_config=config)
    keys = (await old.command(OldJoin(full_name="Ann Lee"))).partition_keys
    await old.command(OldEarn(member_id=keys.aggregate_id, amount="4", note="a"))
    assert await snapshots.get(keys, OldMemberProjector.name) is not None

    new = SekibanExecutor(
        new_domain(), old.event_store, snapshot_store=snapshots, snapshot_config=config
    )
    loaded = await new.load(MemberProjector, keys)
    assert loaded.statistics.rejection is not None
    assert loaded.statistics.rejection.reason is RejectionReason.SCHEMA_CHANGED
    assert loaded.aggregate.payload == Member(
        first_name="Ann", last_name="Lee", tier="basic", points=4, reasons=("a",)
    )


async def test_dapr_actor_reads_old_history_after_the_change() -> None:
    # Release 1's actor takes a snapshot into actor state; release 2's actor, over the
    # same event store and actor state, rebuilds it and takes the next command.
    config = SnapshotConfiguration(count_threshold=2)
    old = ActorHarness(old_domain(), snapshot_config=config)
    keys = (await old.command(OldJoin(full_name="Ann Lee"))).partition_keys
    await old.command(OldEarn(member_id=keys.aggregate_id, amount="4", note="a"))
    before = old.stored_snapshot(OldMemberProjector, keys)
    assert before is not None and before.metadata.schema_fingerprint == ""

    new = ActorHarness(new_domain(), old.event_store, snapshot_config=config)
    new.actor_client.state.update(old.actor_client.state)
    response = await new.command(Award(member_id=keys.aggregate_id, points=3, reason="b"))
    assert response.version == 3
    loaded = await new.load_aggregate(MemberProjector, keys)
    assert loaded.payload == Member(
        first_name="Ann", last_name="Lee", tier="basic", points=7, reasons=("a", "b")
    )
    after = new.stored_snapshot(MemberProjector, keys)
    assert (
        after is not None and after.metadata.schema_fingerprint == new.domain.schema_fingerprint()
    )
    assert new.domain.event_type("PointsEarned") is PointsAwarded


# --- projector versions ------------------------------------------------------------------


async def test_bumping_and_rolling_back_a_projector_version_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    executor = SekibanExecutor(
        bank_domain(),
        snapshot_store=InMemorySnapshotStore(),
        snapshot_config=SnapshotConfiguration(count_threshold=1),
    )
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for version in ("2", "1"):  # the bump, then the rollback: the same executor, commands
        monkeypatch.setattr(AccountProjector, "version", version)
        loaded = await executor.load(AccountProjector, keys)
        assert loaded.statistics.rejection is not None
        assert loaded.statistics.rejection.reason is RejectionReason.PROJECTOR_VERSION
        response = await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
        assert response.events[0].version == loaded.aggregate.version + 1
        again = await executor.load(AccountProjector, keys)
        assert again.statistics.from_snapshot and again.aggregate.projector_version == version
