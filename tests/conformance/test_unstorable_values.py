"""Values no store can keep (NUL characters, lone surrogates, versions past the widest
version column) are refused by every store with the same `InvalidAppendError`, naming
the field, before anything is written."""

from __future__ import annotations

import dataclasses

import pytest

from sekiban import InvalidAppendError, PartitionKeys
from tests.conformance.backends import Stores
from tests.support import stored_events

BAD_TEXT = ["nul\x00inside", "lone \ud800 surrogate", "\udfff"]
TEXT_FIELDS = ["causation_id", "correlation_id", "executed_user", "event_type"]


async def stream(stores: Stores, keys: PartitionKeys) -> list[int]:
    event_store, _ = stores
    return [e.version async for batch in event_store.read_stream(keys) for e in batch]


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("text", BAD_TEXT, ids=["nul", "surrogate", "lone-low-surrogate"])
async def test_unstorable_text_is_refused_naming_the_field(
    stores: Stores, field: str, text: str
) -> None:
    event_store, _ = stores
    keys = PartitionKeys.generate("account")
    good, second = stored_events(keys, 1, 2)
    bad = dataclasses.replace(second, **{field: text})
    with pytest.raises(InvalidAppendError, match=field):
        await event_store.append([good, bad], 0)
    assert await stream(stores, keys) == []  # nothing of the command was written
    await event_store.append([good], 0)  # the store is still fine
    assert await stream(stores, keys) == [1]


@pytest.mark.parametrize("version", [2**31, 2**63, 2**64 + 5])
async def test_versions_past_the_version_range_are_refused(stores: Stores, version: int) -> None:
    event_store, _ = stores
    keys = PartitionKeys.generate("account")
    with pytest.raises(InvalidAppendError, match="version"):
        await event_store.append(stored_events(keys, version + 1, 1), version)
    with pytest.raises(InvalidAppendError, match="version"):
        await event_store.append(stored_events(keys, version, 1), version - 1)
    assert await stream(stores, keys) == []


@pytest.mark.parametrize("expected", [-1, -(2**63) - 1])
async def test_negative_expected_versions_are_refused(stores: Stores, expected: int) -> None:
    event_store, _ = stores
    keys = PartitionKeys.generate("account")
    with pytest.raises(InvalidAppendError, match="expected_version"):
        await event_store.append(stored_events(keys, expected + 1, 1), expected)
    assert await stream(stores, keys) == []
