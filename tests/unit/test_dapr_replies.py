"""Replies that do not arrive whole: retried as transport faults, never applied twice.

daprd answers an actor call with status 200 and whatever part of the body it read when
the actor host's connection drops mid-reply. These tests cut requests and replies at
the transport boundary of the in-process harness; the actor itself runs for real.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from examples.bank import (
    AccountProjector,
    ActiveAccountsQuery,
    DepositMoney,
    OpenAccount,
    bank_domain,
)
from sekiban import EventMetadata, RetryPolicy, SerializationError
from sekiban.core.serialization import Serializer
from sekiban.dapr import messages
from sekiban.dapr.executor import SidecarStatusError, describe_fault
from sekiban.errors import DaprUnavailableError
from sekiban.stores import InMemoryEventStore
from sekiban.testing.actors import ActorHarness

# A transport fault: given the attempt number and the request, return a replacement
# request and a function that alters the reply (or raise to fail the call).
Fault = Callable[[int, bytes | None], tuple[bytes | None, Callable[[bytes], bytes]]]


def untouched(reply: bytes) -> bytes:
    return reply


class FaultyHarness(ActorHarness):
    """The harness with a transport that can cut requests and replies."""

    def __init__(self, fault: Fault, retries: int = 3) -> None:
        self.store = InMemoryEventStore()
        super().__init__(bank_domain(), self.store)
        self.transient_retry = RetryPolicy(attempts=retries + 1, base_delay=timedelta(0))
        self.fault: Fault | None = None
        self.pending_fault = fault
        self.calls = 0

    async def _call(self, actor_id: str, method: str, body: bytes | None, **options: Any) -> bytes:
        if self.fault is None:
            return await super()._call(actor_id, method, body, **options)
        self.calls += 1
        body, alter_reply = self.fault(self.calls, body)
        return alter_reply(await super()._call(actor_id, method, body, **options))

    def arm(self) -> None:
        self.fault, self.calls = self.pending_fault, 0


def cut_first_reply_to(keep: int) -> Fault:
    def fault(attempt: int, body: bytes | None) -> tuple[bytes | None, Callable[[bytes], bytes]]:
        return body, (lambda reply: reply[:keep]) if attempt == 1 else untouched

    return fault


def serializer() -> Serializer:
    return Serializer(bank_domain())


async def deposits(h: FaultyHarness) -> int:
    events = [e async for batch in h.store.read_all() for e in batch]
    return sum(e.event_type == "MoneyDeposited" for e in events)


@pytest.mark.parametrize("keep", [0, 1, 40], ids=["empty", "one-byte", "truncated"])
async def test_a_cut_reply_is_retried_and_the_command_applied_once(keep: int) -> None:
    h = FaultyHarness(cut_first_reply_to(keep))
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    h.arm()

    response = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5))

    assert h.calls == 2
    assert response.version == 2
    assert await deposits(h) == 1
    loaded = await h.load(AccountProjector, keys)
    assert loaded.aggregate.payload.balance == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize("keep", [0, 1, 40], ids=["empty", "one-byte", "truncated"])
async def test_a_cut_query_reply_is_retried_and_answered(keep: int) -> None:
    h = FaultyHarness(cut_first_reply_to(keep))
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    h.arm()

    answer = await h.query(ActiveAccountsQuery())

    assert h.calls == 2
    assert [a.partition_keys for a in answer.items] == [keys]


@pytest.mark.parametrize("reply", [b"", b"not json", b"[1, 2]", b'{"neither": 1}'], ids=repr)
async def test_every_unreadable_reply_is_a_transport_fault_not_a_data_error(
    reply: bytes,
) -> None:
    with pytest.raises(messages.IncompleteMessageError):
        messages.parse_command_reply(serializer(), reply)
    with pytest.raises(messages.IncompleteMessageError):
        messages.parse_aggregate_reply(serializer(), reply)
    with pytest.raises(messages.IncompleteMessageError):
        messages.parse_query_reply(reply)


async def test_a_whole_reply_with_unexpected_fields_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="command reply"):
        messages.parse_command_reply(serializer(), b'{"ok": {"version": 1}}')
    with pytest.raises(SerializationError, match="aggregate reply"):
        messages.parse_aggregate_reply(serializer(), b'{"ok": {"statistics": []}}')


async def test_when_every_reply_is_lost_the_outcome_is_unknown_and_applied_once() -> None:
    h = FaultyHarness(lambda attempt, body: (body, lambda reply: b""), retries=2)
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    h.arm()
    metadata = EventMetadata(causation_id="deposit-1")

    with pytest.raises(DaprUnavailableError, match="outcome is unknown") as raised:
        await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5), metadata)

    assert "deposit-1" in str(raised.value)
    assert h.calls == 3
    assert await deposits(h) == 1
    # The caller sends it again with the same id, through a healthy transport.
    h.fault = None
    again = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5), metadata)
    assert again.version == 2
    assert await deposits(h) == 1


async def test_a_request_cut_on_the_way_is_refused_by_the_actor_and_resent() -> None:
    def cut_first_request(
        attempt: int, body: bytes | None
    ) -> tuple[bytes | None, Callable[[bytes], bytes]]:
        assert body is not None
        return (body[: len(body) // 2] if attempt == 1 else body), untouched

    h = FaultyHarness(cut_first_request)
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    h.arm()

    response = await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5))

    assert h.calls == 2
    assert response.version == 2
    assert await deposits(h) == 1


async def test_a_cut_load_reply_is_retried() -> None:
    h = FaultyHarness(cut_first_reply_to(10))
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    h.arm()

    loaded = await h.load(AccountProjector, keys)

    assert h.calls == 2
    assert loaded.aggregate.version == 1


async def test_failed_calls_are_logged_with_status_error_code_and_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = b'{"errorCode":"ERR_ACTOR_INVOKE_METHOD","message":"error from actor service"}'

    def sidecar_error(
        attempt: int, request: bytes | None
    ) -> tuple[bytes | None, Callable[[bytes], bytes]]:
        if attempt == 1:
            raise SidecarStatusError(500, "Internal Server Error", body)
        return request, untouched

    h = FaultyHarness(sidecar_error)
    keys = (await h.command(OpenAccount(owner="ann"))).partition_keys
    h.arm()
    with caplog.at_level(logging.WARNING, logger="sekiban.dapr"):
        await h.command(DepositMoney(account_id=keys.aggregate_id, amount=5))

    (line,) = [r.getMessage() for r in caplog.records if "ExecuteCommand" in r.getMessage()]
    assert "HTTP 500" in line
    assert "ERR_ACTOR_INVOKE_METHOD" in line
    assert "error from actor service" in line
    assert "Serializer object" not in line


def test_fault_descriptions_show_the_start_of_an_unreadable_body() -> None:
    try:
        messages.parse_command_reply(serializer(), b'{"ok": {"partition_keys": "acc')
    except messages.IncompleteMessageError as error:
        text = describe_fault(error)
    assert "incomplete reply" in text
    assert '{"ok": {"partition_keys": "acc' in text
    assert "30 bytes" in text
