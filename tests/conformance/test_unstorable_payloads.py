"""Payloads no query or load could read back (NaN/±Infinity, nesting past the depth
limit, lone surrogates) are refused with `UnstorablePayloadError` before anything is
written, on every store; the stream and its readers carry on unharmed."""

from __future__ import annotations

from typing import Any

import pytest

from examples.bank import AccountProjector, ActiveAccountsQuery, OpenAccount
from sekiban import CommandLimits, PartitionKeys, SekibanExecutor, UnstorablePayloadError
from tests.conformance.backends import Stores
from tests.payload_domain import JUST_DEEP_ENOUGH, TOO_DEEP, Measure, Note, nested, payload_domain


async def versions(stores: Stores, keys: PartitionKeys) -> list[int]:
    event_store, _ = stores
    return [e.version async for batch in event_store.read_stream(keys) for e in batch]


async def opened(stores: Stores, **limits: int) -> tuple[SekibanExecutor, PartitionKeys]:
    event_store, snapshot_store = stores
    executor = SekibanExecutor(
        payload_domain(),
        event_store,
        snapshot_store=snapshot_store,
        limits=CommandLimits(**limits),
    )
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    return executor, keys


async def still_readable(executor: SekibanExecutor, keys: PartitionKeys) -> None:
    aggregate = await executor.load_aggregate(AccountProjector, keys)
    assert aggregate.version == 1
    accounts = await executor.query(ActiveAccountsQuery())
    assert keys in {a.partition_keys for a in accounts.items}


@pytest.mark.parametrize("price", [float("nan"), float("inf"), float("-inf")])
async def test_non_finite_floats_are_refused_naming_the_field(stores: Stores, price: float) -> None:
    executor, keys = await opened(stores)
    with pytest.raises(UnstorablePayloadError, match=r"Measured .*items\[1\]\.price"):
        await executor.command(Measure(account_id=keys.aggregate_id, prices=[1.5, price]))
    assert await versions(stores, keys) == [1]
    await still_readable(executor, keys)


@pytest.mark.parametrize(
    "data",
    [TOO_DEEP, {"a": TOO_DEEP}, "lone \ud800 surrogate", {"key \udfff": 1}, [1, ["\udc00"]]],
    ids=["200-deep", "deep-in-object", "surrogate", "surrogate-key", "nested-surrogate"],
)
async def test_deep_or_unencodable_payloads_are_refused(stores: Stores, data: Any) -> None:
    executor, keys = await opened(stores)
    with pytest.raises(UnstorablePayloadError, match="Noted"):
        await executor.command(Note(account_id=keys.aggregate_id, data=data))
    assert await versions(stores, keys) == [1]
    await still_readable(executor, keys)


async def test_the_depth_limit_is_configurable(stores: Stores) -> None:
    executor, keys = await opened(stores)
    await executor.command(Note(account_id=keys.aggregate_id, data=JUST_DEEP_ENOUGH))
    with pytest.raises(UnstorablePayloadError, match="deeper than 64"):
        await executor.command(Note(account_id=keys.aggregate_id, data=[JUST_DEEP_ENOUGH]))
    shallow, keys = await opened(stores, max_depth=3)
    await shallow.command(Note(account_id=keys.aggregate_id, data=nested(2)))
    with pytest.raises(UnstorablePayloadError, match="deeper than 3"):
        await shallow.command(Note(account_id=keys.aggregate_id, data=nested(3)))
    assert await versions(stores, keys) == [1, 2]
