"""What can be stored: payloads either read back exactly or are refused before any
write (`UnstorablePayloadError`), and stored garbage reads as a `SerializationError`
naming the event, never a raw `RecursionError`, `ValueError` or pydantic error."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, PlainSerializer

from examples.bank import AccountProjector, DepositMoney, OpenAccount
from sekiban import (
    AggregatePayload,
    EventPayload,
    PartitionKeys,
    RemoteCommandError,
    SekibanExecutor,
    SerializationError,
    Serializer,
    UnstorablePayloadError,
)
from sekiban.core.payload_checks import json_depth, stored_json
from sekiban.dapr import messages
from sekiban.dapr.actor import actor_id_for
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores.memory import InMemoryEventStore, InMemorySnapshotStore
from sekiban.stores.sqlite import SqliteEventStore
from sekiban.testing.actors import ActorHarness
from tests.payload_domain import Measure, Note, nested, payload_domain


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, nan is not None)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats()  # nan and ±inf included
    | st.text(st.characters(codec=None, exclude_categories=()))  # lone surrogates included
)
trees = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(st.characters(codec=None, exclude_categories=())), children, max_size=4
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=trees | st.builds(nested, st.integers(1, 120)))
async def test_payload_trees_round_trip_exactly_or_are_refused_before_writing(data: Any) -> None:
    store = InMemoryEventStore()
    executor = SekibanExecutor(payload_domain(), store)
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    try:
        await executor.command(Note(account_id=keys.aggregate_id, data=data))
    except UnstorablePayloadError:
        stored = [e async for batch in store.read_stream(keys) for e in batch]
        assert [e.version for e in stored] == [1]
        return
    stored = [e async for batch in store.read_stream(keys) for e in batch]
    back = Serializer(payload_domain()).to_event(stored[-1]).payload
    assert same(back.data, data)  # type: ignore[attr-defined]


class Lossy(EventPayload):
    """Payloads whose JSON does not carry them faithfully."""

    count: Annotated[Any, PlainSerializer(float)] = 0
    hidden: int = Field(default=0, exclude=True)


@pytest.mark.parametrize(
    ("payload", "path"),
    [(Lossy(count=3), "count: 3 reads back as 3.0"), (Lossy(count=0.0, hidden=7), "hidden")],
    ids=["int-becomes-float", "excluded-field"],
)
def test_payloads_that_read_back_differently_are_refused(payload: Lossy, path: str) -> None:
    with pytest.raises(UnstorablePayloadError, match=path):
        stored_json(payload, "event", "Lossy", 64)
    assert stored_json(Lossy(count=0.0), "event", "Lossy", 64) == '{"count":0.0}'


def test_json_depth_skips_brackets_inside_strings() -> None:
    assert json_depth('{"a": "[[[\\"[{", "b": [[], {}]}') == 3
    assert json_depth("5") == 0
    assert json_depth("[" * 100_000 + "]" * 100_000) == 100_000  # no recursion


class Gauge(AggregatePayload):
    value: float


async def test_an_unstorable_snapshot_is_counted_as_failed_and_the_command_succeeds() -> None:
    executor = SekibanExecutor(
        payload_domain().register(Gauge),
        snapshot_store=InMemorySnapshotStore(),
        snapshot_config=SnapshotConfiguration(strategy="count", count_threshold=1),
    )
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    repository = executor.repository
    state = await repository.load(repository.domain.projector(AccountProjector), keys)
    gauge = dataclasses.replace(state.aggregate, payload=Gauge(value=math.inf))
    bad = dataclasses.replace(state, aggregate=gauge, snapshot_version=0)
    before = repository.snapshots.failed
    assert await repository.snapshot_if_due(bad, force=True) is bad  # nothing saved
    assert repository.snapshots.failed == before + 1
    response = await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    assert response.version == 2


async def sqlite_account(path: Path) -> PartitionKeys:
    store = await SqliteEventStore.open(path)
    executor = SekibanExecutor(payload_domain(), store)
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    await store.close()
    return keys


async def load_from(path: Path, keys: PartitionKeys) -> None:
    store = await SqliteEventStore.open(path)
    try:
        await SekibanExecutor(payload_domain(), store).load_aggregate(AccountProjector, keys)
    finally:
        await store.close()


async def test_deep_json_planted_in_a_commit_row_is_a_serialization_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    keys = await sqlite_account(path)
    with sqlite3.connect(path) as db:
        deep = "[" * 100_000 + "]" * 100_000
        db.execute("UPDATE commits SET events = ? WHERE first_version = 2", (deep,))
    with pytest.raises(SerializationError, match=rf"{keys} from version 2"):
        await load_from(path, keys)


@pytest.mark.parametrize(
    "payload",
    ['{"amount": "many"}', "[" * 100_000 + "]" * 100_000, '{"amount": NaN}'],
    ids=["wrong-type", "deep", "nan"],
)
async def test_a_bad_stored_payload_names_stream_version_and_type(
    tmp_path: Path, payload: str
) -> None:
    path = tmp_path / "events.db"
    keys = await sqlite_account(path)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE commits SET events = json_replace(events, '$[0][3]', ?) "
            "WHERE first_version = 2",
            (payload,),
        )
    with pytest.raises(SerializationError, match=rf"MoneyDeposited, version 2 of {keys}"):
        await load_from(path, keys)


async def test_actor_commands_with_unstorable_values_are_refused() -> None:
    harness = ActorHarness(payload_domain())
    keys = (await harness.command(OpenAccount(owner="ann"))).partition_keys
    account = keys.aggregate_id
    with pytest.raises(UnstorablePayloadError, match=r"Measure .*prices\[0\]"):  # before sending
        await harness.command(Measure(account_id=account, prices=[math.nan]))

    # Another client's JSON, straight to the actor host.
    actor_id = actor_id_for(AccountProjector.name, keys)
    for data, error in [
        ("NaN", "UnstorablePayloadError"),
        ("[1, -Infinity]", "UnstorablePayloadError"),
        (json.dumps(nested(200)), "UnstorablePayloadError"),
        ('"\\ud800"', "UnstorablePayloadError"),
        ("[" * 100_000 + "]" * 100_000, "SerializationError"),
    ]:
        body = (
            f'{{"command":{{"type":"Note","payload":{{"account_id":"{account}","data":{data}}}}}}}'
        )
        reply = await harness._call(actor_id, "ExecuteCommand", body.encode())
        with pytest.raises(RemoteCommandError) as refused:
            messages.parse_command_reply(harness.serializer, reply)
        assert refused.value.error_type == error
    assert (await harness.load_aggregate(AccountProjector, keys)).version == 1
