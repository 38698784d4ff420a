"""Each fast path in `sekiban.core.fastpaths` gives what the plain public path gives.

One property test (or a few) per trick, on generated input: if a pydantic or CPython
upgrade changes an internal a trick relies on, these fail instead of replay silently
building wrong objects.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from examples.bank import ActiveAccount, MoneyDeposited, bank_domain
from sekiban import (
    AggregatePayload,
    Event,
    EventMetadata,
    EventPayload,
    PartitionKeys,
    SerializationError,
    Serializer,
    SortableUniqueId,
    StoredEvent,
)
from sekiban.core import partition_keys as partition_keys_module
from sekiban.core.events import new_event_id, rebuild_event
from sekiban.core.fastpaths import (
    copy_model_unvalidated,
    partition_keys_from_text,
    scan_json_value,
    sortable_id_from_text,
    trusted_constructor,
    uuid_from_int,
    uuid_from_text,
)
from sekiban.core.serialization import rebuild_stored_event
from sekiban.errors import InvalidPartitionKeysError, InvalidSortableUniqueIdError

# --- generated values ------------------------------------------------------------

uuids = st.integers(0, 2**128 - 1).map(lambda n: uuid.UUID(int=n))
names = st.from_regex(r"[a-z0-9_-]{1,36}", fullmatch=True)
partition_keys = st.builds(PartitionKeys, uuids, names, names)
sortable_id_texts = st.from_regex(r"[0-9]{30}", fullmatch=True)
timestamps = st.datetimes(timezones=st.just(UTC))
hashable_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)


class Amount(EventPayload):
    amount: int
    note: str = ""


metadata = st.builds(EventMetadata, st.text(), st.text(), st.text())
event_fields = st.tuples(
    uuids,
    sortable_id_texts.map(SortableUniqueId),
    st.integers(1, 2**31),
    partition_keys,
    st.builds(Amount, amount=st.integers(), note=st.text()),
    timestamps,
    metadata,
)
stored_event_fields = st.tuples(
    uuids.map(str),
    sortable_id_texts,
    st.integers(1, 2**31),
    partition_keys,
    st.text(),
    st.text(),
    timestamps,
    st.text(),
    st.text(),
    st.text(),
    st.none() | st.integers(1, 2**62),
)


# --- trusted_constructor: exec-built constructors of frozen, slotted dataclasses ----


def assert_same_record(fast: Any, plain: Any) -> None:
    assert type(fast) is type(plain)
    assert fast == plain
    assert hash(fast) == hash(plain)
    assert repr(fast) == repr(plain)
    for field in dataclasses.fields(plain):
        assert getattr(fast, field.name) is getattr(plain, field.name)
    assert dataclasses.replace(fast) == plain
    assert copy.copy(fast) == plain and copy.deepcopy(fast) == plain
    name = dataclasses.fields(plain)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(fast, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(fast, name)
    assert not hasattr(fast, "__dict__")  # still slotted: nothing but the fields


@settings(max_examples=50)
@given(
    field_count=st.integers(1, 12),
    data=st.data(),
)
def test_trusted_constructor_builds_what_the_dataclass_init_builds(
    field_count: int, data: st.DataObject
) -> None:
    record_type = dataclasses.make_dataclass(
        "Record",
        [(f"f{i}", object) for i in range(field_count)],
        frozen=True,
        slots=True,
    )
    values = data.draw(st.tuples(*[hashable_values] * field_count))
    assert_same_record(trusted_constructor(record_type)(*values), record_type(*values))


@given(event_fields)
def test_rebuild_event_builds_what_event_builds(fields: tuple[Any, ...]) -> None:
    fast, plain = rebuild_event(*fields), Event(*fields)
    assert_same_record(fast, plain)
    assert pickle.loads(pickle.dumps(fast)) == plain


@given(stored_event_fields)
def test_rebuild_stored_event_builds_what_stored_event_builds(fields: tuple[Any, ...]) -> None:
    fast, plain = rebuild_stored_event(*fields), StoredEvent(*fields)
    assert_same_record(fast, plain)
    assert pickle.loads(pickle.dumps(fast)) == plain
    assert fast.to_dict() == plain.to_dict()


def test_trusted_constructor_rejects_a_wrong_number_of_values() -> None:
    fields = ("id", "0" * 30, 3, PartitionKeys.generate(), "T", "{}", datetime.now(UTC))
    with pytest.raises(TypeError):
        rebuild_stored_event(*fields)  # without the four fields that have defaults
    with pytest.raises(TypeError):
        rebuild_stored_event(*fields, "a", "b", "c", None, "one too many")


# --- copy_model_unvalidated: AggregatePayload.evolve ---------------------------


class Inner(BaseModel):
    model_config = {"frozen": True}
    label: str


class Sample(AggregatePayload):
    name: str
    count: int = 0
    ratio: float | None = None
    tags: tuple[str, ...] = ()
    inner: Inner | None = None
    when: datetime | None = None


sample_values: dict[str, st.SearchStrategy[Any]] = {
    "name": st.text(),
    "count": st.integers(),
    "ratio": st.none() | st.floats(allow_nan=False),
    "tags": st.lists(st.text(max_size=5), max_size=3).map(tuple),
    "inner": st.none() | st.builds(Inner, label=st.text()),
    "when": st.none() | timestamps,
}
samples = st.fixed_dictionaries(
    {"name": sample_values["name"]},
    optional={k: v for k, v in sample_values.items() if k != "name"},
).map(lambda fields: Sample(**fields))
sample_changes = st.fixed_dictionaries({}, optional=sample_values)
# Values of the wrong type: neither path validates changes.
unvalidated_changes = st.fixed_dictionaries(
    {}, optional={"count": st.text(), "name": st.integers(), "tags": st.lists(st.integers())}
)


def assert_same_model(fast: BaseModel, plain: BaseModel) -> None:
    assert type(fast) is type(plain)
    assert fast == plain
    assert fast.model_fields_set == plain.model_fields_set
    assert fast.__pydantic_extra__ == plain.__pydantic_extra__
    assert fast.__pydantic_private__ == plain.__pydantic_private__
    assert fast.model_dump() == plain.model_dump()
    assert fast.model_dump(exclude_unset=True) == plain.model_dump(exclude_unset=True)
    assert fast.model_dump_json() == plain.model_dump_json()
    assert repr(fast) == repr(plain)
    assert copy.copy(fast) == plain and copy.deepcopy(fast) == plain
    assert pickle.loads(pickle.dumps(fast)) == plain


@given(samples, sample_changes)
def test_copy_model_unvalidated_equals_model_copy_with_update(
    original: Sample, changes: dict[str, Any]
) -> None:
    before = original.model_dump()
    fast = original.evolve(**changes)
    plain = original.model_copy(update=changes)
    assert_same_model(fast, plain)
    assert hash(fast) == hash(plain)
    assert original.model_dump() == before  # the original is untouched
    with pytest.raises(ValidationError):  # still frozen
        fast.name = "changed"
    # Validating the copy's data again succeeds or fails as it does for model_copy's.
    assert Sample.model_validate(fast.model_dump()) == Sample.model_validate(plain.model_dump())
    assert Sample.model_validate_json(fast.model_dump_json()) == Sample.model_validate_json(
        plain.model_dump_json()
    )


@given(samples, unvalidated_changes)
def test_copy_model_unvalidated_validates_no_more_than_model_copy(
    original: Sample, changes: dict[str, Any]
) -> None:
    fast = copy_model_unvalidated(original, **changes)
    plain = original.model_copy(update=changes)
    assert fast.__dict__ == plain.__dict__
    assert fast.model_fields_set == plain.model_fields_set

    def revalidated(model: Sample) -> Any:
        try:
            return Sample.model_validate(model.__dict__)
        except ValidationError as error:
            return error.errors(include_url=False)

    assert revalidated(fast) == revalidated(plain)


@given(st.text(), st.integers(), st.integers(), st.integers())
def test_evolve_of_an_example_payload_equals_model_copy(
    owner: str, balance: int, transactions: int, new_balance: int
) -> None:
    account = ActiveAccount(owner=owner, balance=balance, transactions=transactions)
    assert_same_model(
        account.evolve(balance=new_balance), account.model_copy(update={"balance": new_balance})
    )


# --- uuid_from_int / uuid_from_text: UUIDs without the range check ---------------


@given(st.integers(0, 2**128 - 1))
def test_uuid_from_int_builds_what_uuid_int_builds(value: int) -> None:
    fast, plain = uuid_from_int(value), uuid.UUID(int=value)
    assert type(fast) is uuid.UUID
    assert fast == plain
    assert hash(fast) == hash(plain)
    assert str(fast) == str(plain) and repr(fast) == repr(plain)
    assert fast.int == plain.int and fast.bytes == plain.bytes and fast.hex == plain.hex
    assert fast.version == plain.version and fast.variant == plain.variant
    assert fast.is_safe is plain.is_safe is uuid.SafeUUID.unknown
    for twin in (pickle.loads(pickle.dumps(fast)), copy.copy(fast), copy.deepcopy(fast)):
        assert twin == plain and twin.is_safe is plain.is_safe
    assert not (fast < plain) and not (fast > plain)
    assert weakref.ref(fast)() is fast
    with pytest.raises(TypeError):  # still immutable
        fast.int = 0  # type: ignore[misc]
    assert not hasattr(fast, "__dict__")  # still slotted: `int` and `is_safe` only


@given(st.integers(0, 2**128 - 1))
def test_uuid_from_text_parses_the_canonical_form_as_uuid_does(value: int) -> None:
    text = str(uuid.UUID(int=value))
    fast, plain = uuid_from_text(text), uuid.UUID(text)
    assert fast == plain and hash(fast) == hash(plain) and str(fast) == text


uuid_like_texts = st.one_of(
    st.text(),
    st.text("0123456789abcdefABCDEF-{}_+ x", max_size=40),
    st.integers(0, 2**160).map(lambda n: f"{n:x}"),
    st.integers(0, 2**128 - 1).map(lambda n: str(uuid.UUID(int=n)).upper()),
    st.integers(0, 2**128 - 1).map(lambda n: f"{{{uuid.UUID(int=n)}}}"),
)


def parsed_or_error(parse: Any, text: str, error: type[Exception] = ValueError) -> Any:
    """What `parse(text)` returns, or `error` (the class) when it raises one."""
    try:
        return parse(text)
    except error:
        return error


@given(uuid_like_texts)
def test_uuid_from_text_accepts_and_rejects_what_uuid_does(text: str) -> None:
    fast, plain = parsed_or_error(uuid_from_text, text), parsed_or_error(uuid.UUID, text)
    assert fast == plain
    if plain is not ValueError:
        assert fast.int < 2**128 and hash(fast) == hash(plain)


def test_event_ids_are_distinct_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


def test_stored_ids_are_rebuilt_exactly_and_bad_ones_rejected() -> None:
    serializer = Serializer(bank_domain())
    event = Event(
        uuid.uuid4(),
        SortableUniqueId.generate(),
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


# --- sortable_id_from_text: a digit check instead of the regular expression ------


@given(sortable_id_texts)
def test_sortable_id_from_text_accepts_what_sortable_unique_id_accepts(text: str) -> None:
    fast, plain = sortable_id_from_text(text), SortableUniqueId(text)
    assert type(fast) is SortableUniqueId
    assert fast == plain and hash(fast) == hash(plain)


def sortable_id_or_error(parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except InvalidSortableUniqueIdError:
        return InvalidSortableUniqueIdError


@given(
    st.text()
    | st.text("0123456789", min_size=29, max_size=31)
    | st.text("0123456789 \n+-_", min_size=30, max_size=30)
    | st.text("0123456789\u00b2\u0663\uff11", min_size=30, max_size=30)  # ² is no Nd digit
)
def test_sortable_id_from_text_accepts_and_rejects_what_sortable_unique_id_does(
    text: str,
) -> None:
    fast = sortable_id_or_error(sortable_id_from_text, text)
    assert fast == sortable_id_or_error(SortableUniqueId, text)
    assert type(fast) is not str


@given(st.integers(1, 20), timestamps)
def test_generated_sortable_ids_are_accepted_by_the_validating_constructor(
    count: int, moment: datetime
) -> None:
    # `generate_many` and `min_for` build ids with `str.__new__`, skipping the check.
    # The clock stays at now: a later one would move this process's id sequence on.
    ids = SortableUniqueId.generate_many(count)
    assert ids == sorted(ids) and len(set(ids)) == count
    for made in [*ids, SortableUniqueId.min_for(moment)]:
        assert SortableUniqueId(made) == made


# --- scan_json_value: the JSON decoder's scanner, called directly ----------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: big integers too
    | st.floats()  # NaN and infinities included, as json.dumps writes them
    | st.text(),  # any code point, lone surrogates included
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)
json_layouts = st.sampled_from(
    [
        {"separators": (",", ":")},
        {"separators": (",", ":"), "ensure_ascii": False},
        {},
        {"indent": 2, "ensure_ascii": False},
    ]
)


def canonical(value: Any) -> str:
    """Equal for equal JSON values, NaN included, and telling 1, 1.0 and True apart."""
    return json.dumps(value, ensure_ascii=True)


@given(json_values, json_layouts)
def test_scan_json_value_decodes_what_json_loads_decodes(
    value: Any, layout: dict[str, Any]
) -> None:
    text = json.dumps(value, **layout)
    fast, end = scan_json_value(text, 0)
    assert end == len(text)
    assert canonical(fast) == canonical(json.loads(text)) == canonical(value)


def scan_whole_document(text: str) -> Any:
    """How the SQLite store decodes a commit: one value, nothing after it."""
    value, end = scan_json_value(text, 0)
    if end != len(text):
        raise ValueError(f"extra data at {end}")
    return value


@st.composite
def damaged_json(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # a string written without escaping: control characters
        return '"' + draw(st.text()) + '"'
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
    at = draw(st.integers(0, len(text)))
    damage = draw(st.sampled_from(["cut", "drop", "insert"]))
    if damage == "cut":
        return text[:at]
    if damage == "drop":
        return text[:at] + text[at + 1 :]
    return text[:at] + draw(st.sampled_from(list('{}[],:"\\0-.eE x\x00'))) + text[at:]


@given(damaged_json() | st.text())
def test_scan_json_value_rejects_what_json_loads_rejects(text: str) -> None:
    text = text.strip(" \t\n\r")  # json.loads skips outer whitespace; stores write none
    try:
        plain = json.loads(text)
    except json.JSONDecodeError:
        with pytest.raises((ValueError, StopIteration)):
            scan_whole_document(text)
    else:
        assert canonical(scan_whole_document(text)) == canonical(plain)


def test_payloads_with_private_attributes_or_extras_evolve_by_model_copy() -> None:
    from pydantic import ConfigDict, PrivateAttr

    from sekiban import AggregatePayload

    class WithPrivate(AggregatePayload):
        count: int
        _cache: dict[str, int] = PrivateAttr(default_factory=dict)

    class WithExtras(AggregatePayload):
        model_config = ConfigDict(extra="allow")
        count: int

    private = WithPrivate(count=1)
    private._cache["seen"] = 1
    evolved = private.evolve(count=2)
    assert evolved.count == 2 and evolved._cache == {"seen": 1}

    extras = WithExtras(count=1, note="kept")  # type: ignore[call-arg]
    assert extras.evolve(count=2).model_dump() == {"count": 2, "note": "kept"}


@given(partition_keys)
def test_partition_keys_from_text_parses_the_canonical_form_as_parse_does(
    keys: PartitionKeys,
) -> None:
    text = str(keys)
    fast, plain = partition_keys_from_text(text), PartitionKeys.parse(text)
    assert fast == plain == keys and hash(fast) == hash(plain) and str(fast) == text
    assert type(fast) is PartitionKeys and type(fast.aggregate_id) is uuid.UUID


keys_like_texts = st.one_of(
    st.text(),
    st.text("abcdefABCDEF0123456789@-_ {}.", max_size=90),
    partition_keys.map(str).map(str.upper),
    partition_keys.map(lambda k: f"{k.root_partition_key}@{k.group}@{k.aggregate_id.hex}"),
    partition_keys.map(lambda k: f"{k.root_partition_key}@{k.group}@{{{k.aggregate_id}}}"),
    partition_keys.map(lambda k: f"{k}@extra"),
    st.tuples(st.text(max_size=40), names, uuids).map(lambda t: f"{t[0]}@{t[1]}@{t[2]}"),
)


@given(keys_like_texts)
def test_partition_keys_from_text_accepts_and_rejects_what_parse_does(text: str) -> None:
    fast = parsed_or_error(partition_keys_from_text, text, InvalidPartitionKeysError)
    assert fast == parsed_or_error(PartitionKeys.parse, text, InvalidPartitionKeysError)


def test_partition_keys_from_text_follows_the_name_rule_of_partition_keys() -> None:
    # The fast path spells the rule out in its own expression: same rule, same limits.
    assert partition_keys_module._NAME.pattern == "[a-z0-9_-]{1,36}"
