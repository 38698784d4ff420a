"""Hostile or damaged input in every store: rejected clearly, stored verbatim, never run."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

import pytest

from examples.bank import (
    AccountProjector,
    DepositMoney,
    MoneyDeposited,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    Event,
    EventPayload,
    PartitionKeys,
    SekibanExecutor,
    SerializationError,
    Serializer,
    SortableUniqueId,
    UnknownTypeError,
)
from tests.conformance.backends import Stores
from tests.support import stored_events

HOSTILE_NAMES = [
    "Robert'); DROP TABLE events;--",
    'quote" OR 1=1 --',
    "名前\u202eevil",
    "back\\slash%_",
]


class Noted(EventPayload):
    note: str


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_type_names_and_text_are_stored_verbatim(stores: Stores, name: str) -> None:
    event_store, _ = stores
    domain = bank_domain().register_as(Noted, name)
    executor = SekibanExecutor(domain, event_store)
    keys = (await executor.command(OpenAccount(owner=name))).partition_keys
    serializer = Serializer(domain)
    event = Event(
        uuid.uuid4(), SortableUniqueId.generate(), 2, keys, Noted(note=name), datetime.now(UTC)
    )
    await event_store.append([serializer.to_stored(event)], 1)
    back = [e async for b in event_store.read_stream(keys) for e in b]
    assert back[1].event_type == name
    assert serializer.to_event(back[1]) == event
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert aggregate.version == 2 and aggregate.payload.owner == name  # type: ignore[attr-defined]


async def test_stored_unknown_type_names_the_event_and_imports_nothing(stores: Stores) -> None:
    event_store, _ = stores
    keys = PartitionKeys.generate("account")
    assert "antigravity" not in sys.modules
    await event_store.append(stored_events(keys, 1, 1, event_type="antigravity.fly"), 0)
    executor = SekibanExecutor(bank_domain(), event_store)
    with pytest.raises(UnknownTypeError, match=r"antigravity\.fly"):
        await executor.load_aggregate(AccountProjector, keys)
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize(
    "payload", ['{"amount": "lots"}', '{"amount": -5}', '{"amount": -1, "x": 2}', "[]"]
)
async def test_stored_payload_of_the_wrong_shape_names_the_event(
    stores: Stores, payload: str
) -> None:
    event_store, _ = stores
    keys = PartitionKeys.generate("account")
    executor = SekibanExecutor(bank_domain(), event_store)
    await executor.command(OpenAccount(owner="ann", account_id=keys.aggregate_id))
    [bad] = stored_events(keys, 2, 1, event_type="MoneyDeposited", payload=payload)
    await event_store.append([bad], 1)
    with pytest.raises(SerializationError, match=bad.id):
        await executor.load_aggregate(AccountProjector, keys)
    with pytest.raises(SerializationError, match="MoneyDeposited"):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    assert MoneyDeposited.model_validate_json('{"amount": 1}')  # the type itself is fine
