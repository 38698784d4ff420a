"""The fast paths of replay build exactly what the ordinary constructors build."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from examples.bank import ActiveAccount, MoneyDeposited, bank_domain
from sekiban import Event, PartitionKeys, SerializationError, Serializer, StoredEvent
from sekiban.core.fastpaths import trusted_constructor


def test_trusted_constructor_builds_an_equal_frozen_record() -> None:
    keys = PartitionKeys.generate()
    now = datetime.now(UTC)
    fields = ("id", "0" * 30, 3, keys, "T", "{}", now, "a", "b", "c", 7)
    fast = trusted_constructor(StoredEvent)(*fields)
    assert fast == StoredEvent(*fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.version = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        trusted_constructor(StoredEvent)(*fields[:-1])


def test_evolve_equals_a_validated_model_and_round_trips() -> None:
    account = ActiveAccount(owner="ann", balance=1, transactions=1)
    evolved = account.evolve(balance=5)
    assert evolved == ActiveAccount(owner="ann", balance=5, transactions=1)
    assert ActiveAccount.model_validate_json(evolved.model_dump_json()) == evolved
    assert account.balance == 1  # the original is untouched
    assert evolved.model_fields_set == {"owner", "balance", "transactions"}


def test_stored_ids_are_rebuilt_exactly_and_bad_ones_rejected() -> None:
    serializer = Serializer(bank_domain())
    event = Event(
        uuid.uuid4(),
        __import__("sekiban").SortableUniqueId.generate(),
        1,
        PartitionKeys.generate(),
        MoneyDeposited(amount=1),
        datetime.now(UTC),
    )
    stored = serializer.to_stored(event)
    back = serializer.to_event(stored)
    assert back == event and back.id == event.id and hash(back.id) == hash(event.id)
    for bad in (
        {"id": "not-a-uuid"},
        {"sortable_unique_id": "123"},
        {"sortable_unique_id": "x" * 30},
    ):
        with pytest.raises(SerializationError):
            serializer.to_event(dataclasses.replace(stored, **bad))


def test_event_ids_are_distinct_version_4_uuids() -> None:
    from sekiban.core.events import new_event_id

    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
