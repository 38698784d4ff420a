"""Exactly-once commands on every store: a resent command id, or a retry after a reply
lost between the store's commit and the caller, returns the first response and appends
nothing. `LostReplyStore` wraps the real store: its append commits, then fails."""

from __future__ import annotations

import pytest

from examples.bank import DepositMoney, OpenAccount, bank_domain
from sekiban import SekibanExecutor, StoreConnectionError
from tests.conformance.backends import Stores
from tests.conformance.test_event_store import read_stream
from tests.support import LostReplyStore


async def test_a_resent_command_id_returns_the_first_response_and_appends_nothing(
    stores: Stores,
) -> None:
    store, _ = stores
    executor = SekibanExecutor(bank_domain(), store)
    open_ann = OpenAccount(owner="ann")
    opened = await executor.command(open_ann, command_id="open-ann")
    keys = opened.partition_keys
    deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)
    deposited = await executor.command(deposit, command_id="deposit-1")
    await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))

    # A handler that would now refuse (the account is open), and one that would decide
    # new events: both are answered from the store, as the first time.
    assert await executor.command(open_ann, command_id="open-ann") == opened
    assert await executor.command(deposit, command_id="deposit-1") == deposited
    assert [e.version for e in await read_stream(store, keys)] == [1, 2, 3]


async def test_a_lost_reply_is_found_in_the_stream_and_answered(stores: Stores) -> None:
    store, _ = stores
    lossy = LostReplyStore(store, lambda cause: cause == "deposit-1")
    executor = SekibanExecutor(bank_domain(), lossy)
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys

    response = await executor.command(
        DepositMoney(account_id=keys.aggregate_id, amount=5), command_id="deposit-1"
    )

    assert lossy.lost == ["deposit-1"]  # the append committed and its reply was lost
    events = await read_stream(store, keys)
    assert [e.causation_id for e in events].count("deposit-1") == 1
    assert response.version == 2
    assert response.events == tuple(executor.repository.serializer.to_event(e) for e in events[1:])


async def test_a_caller_resending_after_a_lost_reply_gets_the_original_response(
    stores: Stores,
) -> None:
    store, _ = stores
    lossy = LostReplyStore(store, lambda cause: cause == "deposit-1", stay_down=True)
    executor = SekibanExecutor(bank_domain(), lossy)
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)

    # The reply is lost and the database stays away: the outcome is unknown.
    with pytest.raises(StoreConnectionError):
        await executor.command(deposit, command_id="deposit-1")
    lossy.down = False
    again = await executor.command(deposit, command_id="deposit-1")

    events = await read_stream(store, keys)
    assert [e.version for e in events] == [1, 2]
    assert again.version == 2
    assert again.events == (executor.repository.serializer.to_event(events[1]),)
