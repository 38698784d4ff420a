"""The speed tricks of the hot paths, fenced in one place.

Replay builds a few objects per event, so a few hundred nanoseconds per object is most
of the cost of a load. Each function here gives exactly what a plain public call gives,
for the inputs its caller guarantees, by going around that call's checks or wrappers;
the rest of the code stays plain and calls these. What each trick relies on is written
below: a pydantic or CPython upgrade that changes one of those internals fails its test
in `tests/unit/test_fastpaths.py`, which compares the trick with the plain path on
generated input, instead of silently corrupting data.

`trusted_constructor(cls)` — equals `cls(*values)` for a frozen, slotted dataclass.
    Relies on: `@dataclass(slots=True)` turning each field into a CPython member
    descriptor in `cls.__dict__`, whose `__set__` writes the slot without going through
    the frozen `__setattr__`; `object.__new__(cls)` leaving every slot unset; the
    constructor's source is generated and `exec`-ed (from field positions only). Skips
    defaults and `__post_init__`. Guarded by `test_trusted_constructor_*`.

`copy_model_unvalidated(model, **changes)` — equals `model.model_copy(update=changes)`
    for pydantic models without private attributes or extra fields (`AggregatePayload`
    forbids extras). Relies on: pydantic v2's instance layout, the four slots
    `__dict__` (field values), `__pydantic_fields_set__`, `__pydantic_extra__` and
    `__pydantic_private__`, written with `object.__setattr__` around the frozen check.
    Guarded by `test_copy_model_unvalidated_*`.

`uuid_from_int(value)` — equals `uuid.UUID(int=value)` for `0 <= value < 2**128`.
    Relies on: `uuid.UUID` keeping its state in the slots `int` and `is_safe` only
    (CPython's `uuid.py`), written with `object.__setattr__` around its immutability
    check; no range check. Guarded by `test_uuid_from_int_*`.

`uuid_from_text(text)` — equals `uuid.UUID(text)` for every string. 32 hex digits
    once hyphens are dropped (the canonical form `str(uuid)` writes) are parsed with
    `int(..., 16)`, as `uuid.UUID` itself does, then `uuid_from_int`; anything else goes
    through `uuid.UUID`. Relies on `uuid.UUID(str)` accepting exactly that (CPython's
    `uuid.py`). Guarded by `test_uuid_from_text_*`.

`sortable_id_from_text(text)` — equals `SortableUniqueId(text)` for every string:
    `str.isdecimal` stands in for the id's regular expression (`\\d` matches exactly
    the Unicode category Nd that `isdecimal` tests), anything else goes through the
    validating constructor. Guarded by `test_sortable_id_from_text_*`.

`partition_keys_from_text(text)` — equals `PartitionKeys.parse(text)` for every string.
    Text in the canonical form `str(keys)` writes (two names of `[a-z0-9_-]{1,36}` and
    a lower-case hyphenated uuid, split by `@`: one regular expression checks all of
    it) is built with `trusted_constructor` and `uuid_from_int`; anything else goes
    through `PartitionKeys.parse`, which accepts it or raises. Relies on the name rule
    of `sekiban.core.partition_keys` (`_NAME`, compared in the test) and the two tricks
    it uses. Guarded by `test_partition_keys_from_text_*`.

`scan_json_value(text, index)` — the C scanner inside `json.loads`, without its
    Python wrappers: returns `(value, end)` for the JSON value starting exactly at
    `index`. Relies on: the undocumented `json.JSONDecoder().scan_once` attribute (the
    `_json` C scanner from `json.scanner.c_make_scanner` when available), which skips
    no whitespace, raises `StopIteration` when no value starts at `index` and
    `json.JSONDecodeError` (a `ValueError`) on malformed input; the caller checks that
    `end == len(text)`. Guarded by `test_scan_json_value_*`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import fields
from sys import intern
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.sortable_id import SortableUniqueId

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_new = object.__new__
_set = object.__setattr__
# Read once: every access to an enum member through its class runs a descriptor.
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def trusted_constructor(cls: type[T]) -> Callable[..., T]:
    """A positional constructor for a frozen, slotted dataclass that skips `__init__`.

    A frozen dataclass's `__init__` goes through the generic `object.__setattr__` for
    every field; writing the slots directly halves the cost of the records a replay
    builds per event. Only for values that were validated when they were stored: no
    defaults, no `__post_init__`, every field in declaration order (a wrong count of
    values raises `TypeError`).
    """
    record_type: type[DataclassInstance] = cls  # type: ignore[assignment]
    names = [f.name for f in fields(record_type)]
    setters = {f"_set_{i}": cls.__dict__[name].__set__ for i, name in enumerate(names)}
    # Straight-line code, one slot write per field, as `dataclasses` generates
    # `__init__`: a loop over the setters costs as much again. The source is built from
    # the class's own field positions only; no stored value ever reaches it.
    parameters = ", ".join(f"v{i}" for i in range(len(names)))
    body = "".join(f"    _set_{i}(record, v{i})\n" for i in range(len(names)))
    source = f"def build({parameters}):\n    record = _new(_cls)\n{body}    return record\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec(source, namespace)
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"trusted_constructor({cls.__name__})"
    return build


def copy_model_unvalidated(model: M, /, **changes: Any) -> M:
    """A copy of `model` with `changes` applied and not validated, like
    `model.model_copy(update=changes)` at half its cost.

    For folding events that were validated when they were decided. The copy has no
    private attributes and no extra fields: not for models that define either.
    """
    copy = _new(type(model))
    _set(copy, "__dict__", {**model.__dict__, **changes})
    _set(copy, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    _set(copy, "__pydantic_extra__", None)
    _set(copy, "__pydantic_private__", None)
    return copy


def uuid_from_int(value: int) -> uuid.UUID:
    """`uuid.UUID(int=value)` without its range check, for values known to fit 128 bits
    (a third of the cost, on every event written or read)."""
    result = _new(uuid.UUID)
    _set(result, "int", value)
    _set(result, "is_safe", _UNKNOWN_SAFETY)
    return result


def uuid_from_text(text: str) -> uuid.UUID:
    """`uuid.UUID(text)` for an id read from storage, at a fraction of the cost when it
    is in the canonical form `str(uuid)` writes."""
    digits = text.replace("-", "")
    if len(digits) != 32:
        return uuid.UUID(text)  # not canonical: the plain parser accepts it or raises
    return uuid_from_int(int(digits, 16))


def sortable_id_from_text(text: str) -> SortableUniqueId:
    """`SortableUniqueId(text)` for an id read from storage, without the regular
    expression when it is well formed."""
    if len(text) != 30 or not text.isdecimal():
        return SortableUniqueId(text)  # validates, raising a clear error
    return str.__new__(SortableUniqueId, text)


_trusted_keys = trusted_constructor(PartitionKeys)
_CANONICAL_KEYS = re.compile(
    r"([a-z0-9_-]{1,36})@([a-z0-9_-]{1,36})@"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def partition_keys_from_text(text: str) -> PartitionKeys:
    """`PartitionKeys.parse(text)` for keys read from storage, at a fraction of the
    cost when they are in the canonical form (a projection state restores one per
    aggregate). Group and root names are interned: a state of 100,000 aggregates
    holds each name once, not once per aggregate."""
    match = _CANONICAL_KEYS.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return PartitionKeys.parse(text)  # accepts another spelling or raises
    root, group = match.group(1, 2)
    aggregate_id = uuid_from_int(int(text[-36:].replace("-", ""), 16))
    return _trusted_keys(aggregate_id, intern(group), intern(root))


scan_json_value: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""`(value, end)` for the JSON value that starts at exactly `index` in `text`.

`json.loads` costs as much again in Python wrappers per call, and a command's commit
is often a single event. Raises `StopIteration` when no value starts at `index` and a
`ValueError` when the text is malformed; trailing text is the caller's to reject.
"""
