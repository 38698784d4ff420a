import dataclasses
import json
import uuid
from datetime import UTC, datetime

import pytest

from examples.bank import (
    AccountOpened,
    AccountProjector,
    ActiveAccount,
    DepositMoney,
    MoneyDeposited,
    bank_domain,
)
from sekiban import (
    CommandValidationError,
    DomainTypes,
    DuplicateTypeError,
    Event,
    EventMetadata,
    EventPayload,
    PartitionKeys,
    SerializationError,
    Serializer,
    SortableUniqueId,
    StoredEvent,
    UnknownTypeError,
)


def test_registering_two_types_under_one_name_is_rejected() -> None:
    class Other(EventPayload):
        pass

    domain = DomainTypes(AccountOpened)
    with pytest.raises(DuplicateTypeError, match="AccountOpened"):
        domain.register_as(Other, "AccountOpened")


def test_registering_the_same_type_twice_is_harmless() -> None:
    domain = DomainTypes(AccountOpened, AccountOpened)
    assert domain.event_type("AccountOpened") is AccountOpened


def test_unknown_name_error_names_the_type_and_registry() -> None:
    with pytest.raises(UnknownTypeError, match=r"'os\.system'.*DomainTypes"):
        bank_domain().event_type("os.system")


def test_projectors_resolve_by_name_and_class_to_one_instance() -> None:
    domain = bank_domain()
    assert domain.projector("account") is domain.projector(AccountProjector)


def test_unregistered_projector_is_rejected() -> None:
    with pytest.raises(UnknownTypeError):
        DomainTypes().projector(AccountProjector)


def test_non_domain_types_cannot_be_registered() -> None:
    with pytest.raises(TypeError):
        DomainTypes(dict)


def _event(payload: EventPayload) -> Event[EventPayload]:
    return Event(
        id=uuid.uuid4(),
        sortable_unique_id=SortableUniqueId.generate(),
        version=3,
        partition_keys=PartitionKeys.generate("account"),
        payload=payload,
        timestamp=datetime.now(UTC),
        metadata=EventMetadata("cause", "corr", "user"),
    )


def test_every_registered_event_round_trips() -> None:
    serializer = Serializer(bank_domain())
    for payload in [AccountOpened(owner="Zoë 🚀"), MoneyDeposited(amount=5)]:
        event = _event(payload)
        stored = serializer.to_stored(event)
        assert stored.event_type == type(payload).__name__
        assert serializer.to_event(stored) == event


def test_stored_event_with_unknown_type_is_rejected_by_name() -> None:
    stored = Serializer(bank_domain()).to_stored(_event(MoneyDeposited(amount=5)))
    stored = StoredEvent(**{**_fields(stored), "event_type": "subprocess.Popen"})
    with pytest.raises(UnknownTypeError, match=r"subprocess\.Popen"):
        Serializer(bank_domain()).to_event(stored)


def test_malformed_stored_payload_names_the_event() -> None:
    stored = Serializer(bank_domain()).to_stored(_event(MoneyDeposited(amount=5)))
    for bad in ['{"amount": -1}', "{not json", '{"amount": "x", "extra": 2}', "[]"]:
        broken = StoredEvent(**{**_fields(stored), "payload": bad})
        with pytest.raises(SerializationError, match=stored.id):
            Serializer(bank_domain()).to_event(broken)


def test_a_stored_field_the_type_no_longer_has_is_dropped_on_read() -> None:
    # An event type that lost a field still reads its old events (read_extra="ignore").
    stored = Serializer(bank_domain()).to_stored(_event(MoneyDeposited(amount=5)))
    old = StoredEvent(**{**_fields(stored), "payload": '{"amount": 5, "memo": "rent"}'})
    assert Serializer(bank_domain()).to_event(old).payload == MoneyDeposited(amount=5)


def test_commands_round_trip_as_registry_json() -> None:
    serializer = Serializer(bank_domain())
    command = DepositMoney(account_id=uuid.uuid4(), amount=7)
    text = serializer.dump_command(command)
    assert json.loads(text)["type"] == "DepositMoney"
    assert serializer.load_command(text) == command


def test_received_command_with_invalid_field_names_the_field() -> None:
    serializer = Serializer(bank_domain())
    text = json.dumps(
        {"type": "DepositMoney", "payload": {"account_id": str(uuid.uuid4()), "amount": -3}}
    )
    with pytest.raises(CommandValidationError, match="amount"):
        serializer.load_command(text)


@pytest.mark.parametrize("text", ["", "[]", '{"type": 1}', '{"type": "DepositMoney"}', "nan"])
def test_malformed_command_envelope_is_rejected(text: str) -> None:
    with pytest.raises(SerializationError):
        Serializer(bank_domain()).load_command(text)


def test_aggregate_payload_round_trips() -> None:
    serializer = Serializer(bank_domain())
    name, data = serializer.dump_payload(ActiveAccount(owner="a", balance=3))
    assert serializer.load_payload(name, data) == ActiveAccount(owner="a", balance=3)


def _fields(stored: StoredEvent) -> dict[str, object]:
    return {f: getattr(stored, f) for f in stored.__dataclass_fields__}


def test_stored_event_dict_form_round_trips_and_rejects_garbage() -> None:
    stored = Serializer(bank_domain()).to_stored(_event(MoneyDeposited(amount=5)))
    assert StoredEvent.from_dict(json.loads(json.dumps(stored.to_dict()))) == stored
    for bad in [
        {},
        {**stored.to_dict(), "version": "x"},
        {**stored.to_dict(), "partition_keys": "a"},
    ]:
        with pytest.raises(SerializationError):
            StoredEvent.from_dict(bad)


def test_consecutive_events_keep_their_own_metadata_when_one_serializer_decodes_them() -> None:
    serializer = Serializer(bank_domain())
    metadata = [
        EventMetadata("cause", "corr", "user"),
        EventMetadata("cause", "corr", "user"),
        EventMetadata("cause", "corr", "other"),
        EventMetadata(),
        EventMetadata("", "corr", ""),
    ]
    events = [
        dataclasses.replace(_event(MoneyDeposited(amount=i + 1)), metadata=m)
        for i, m in enumerate(metadata)
    ]
    decoded = [serializer.to_event(serializer.to_stored(e)) for e in events]
    assert decoded == events
    assert decoded[0].metadata is decoded[1].metadata  # equal metadata, one object
