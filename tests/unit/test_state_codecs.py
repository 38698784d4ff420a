"""State codecs decode many lines at a time: the same states and the same refusals as
decoding line by line, wherever in a large state the bad line is."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from examples.bank import (
    AccountProjector,
    ActiveAccount,
    ClosedAccount,
    DepositMoney,
    MoneyDeposited,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    Aggregate,
    Event,
    EventPayload,
    MultiProjector,
    PartitionKeys,
    Query,
    SekibanError,
    SekibanExecutor,
    Serializer,
    SortableUniqueId,
)
from sekiban.core.gc_pause import gc_paused
from sekiban.projections import AggregateMapCodec, InMemoryProjectionStore, JsonStateCodec
from sekiban.projections.codec import BATCH_LINES

SIZE = 2 * BATCH_LINES + 7  # two whole batches and part of a third


def aggregate_state(size: int = SIZE) -> dict[PartitionKeys, Aggregate[Any]]:
    projector = AccountProjector()
    state: dict[PartitionKeys, Aggregate[Any]] = {}
    for n in range(size):
        keys = PartitionKeys(uuid.uuid4(), "account", "default" if n % 3 else "tenant-b")
        payload = (
            ActiveAccount(owner=f"owner {n}", balance=n)
            if n % 2
            else ClosedAccount(owner=f"owner {n}", reason=f"reason {n}")
        )
        last = None if n % 5 == 0 else SortableUniqueId.generate()
        state[keys] = Aggregate(payload, keys, n + 1, last, projector.name, projector.version)
    return state


def aggregate_codec() -> AggregateMapCodec:
    return AggregateMapCodec(Serializer(bank_domain()), AccountProjector())


def test_a_large_aggregate_state_of_mixed_payload_types_round_trips() -> None:
    state = aggregate_state()
    codec = aggregate_codec()
    restored = codec.load(codec.dump(state))
    assert list(restored) == list(state)  # order kept: lines are decoded in order
    assert restored == state
    assert {type(a.payload) for a in restored.values()} == {ActiveAccount, ClosedAccount}


BAD_AGGREGATE_LINES = [
    b"no tab at all",
    b"not json\t{}",
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11",1,null,"NoSuchType"]\t{}',
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11",1,null,"ActiveAccount"]\t{"x":',
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11","1",null,"ActiveAccount"]\t{}',
    b'["NOT@keys@x",1,null,"ActiveAccount"]\t{"owner":"a"}',
    # Two heads in one line: joined with the others, the batch has one entry too many.
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11",1,null,"ActiveAccount"],'
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d12",1,null,"ActiveAccount"]'
    b'\t{"owner":"a"}',
    # Space after the head: the array is whole, but not as `dump` writes it.
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11",1,null,"ActiveAccount"] '
    b'\t{"owner":"a","balance":1}',
    # Two payloads in one line.
    b'["default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11",1,null,"ActiveAccount"]'
    b'\t{"owner":"a"},{"owner":"b"}',
]


@pytest.mark.parametrize("bad", BAD_AGGREGATE_LINES)
@pytest.mark.parametrize("at", [0, BATCH_LINES - 1, BATCH_LINES + 500, SIZE - 1])
def test_one_bad_line_anywhere_in_a_large_aggregate_state_is_refused(bad: bytes, at: int) -> None:
    codec = aggregate_codec()
    lines = list(codec.dump(aggregate_state()))
    lines[at] = bad
    with pytest.raises((ValueError, SekibanError)):
        codec.load(lines)


def test_a_large_default_codec_state_round_trips_and_refuses_a_bad_line_anywhere() -> None:
    codec = JsonStateCodec(dict[str, int])
    state = {f"key {n}": n for n in range(SIZE)}
    lines = list(codec.dump(state))
    assert codec.load(iter(lines)) == state
    listed = JsonStateCodec(list[int])
    assert listed.load(listed.dump(list(range(SIZE)))) == list(range(SIZE))
    for bad in (b'["a",1],["b",2]', b'["a","not a number"]', b"[", b'["a"]'):
        for at in (0, BATCH_LINES + 3, SIZE - 1):
            damaged = lines.copy()
            damaged[at] = bad
            with pytest.raises(ValueError):
                codec.load(iter(damaged))


def test_a_pause_holds_the_collector_off_and_resumes_it_after_the_last_nested_pause() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    release = threading.Event()

    def other_thread() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other_thread)
    with gc_paused():
        assert not gc.isenabled()
        thread.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread's pause still holds
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_the_application_disabled_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_pause_resumes_the_collector_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


class RecordingCodec:
    """The default codec, noting whether the collector ran while it built the state."""

    def __init__(self) -> None:
        self.inner = JsonStateCodec(dict[str, int])
        self.collector_enabled: list[bool] = []

    def dump(self, state: dict[str, int]) -> Iterator[bytes]:
        return self.inner.dump(state)

    def load(self, lines: Iterator[bytes]) -> dict[str, int]:
        self.collector_enabled.append(gc.isenabled())
        return self.inner.load(lines)


class Deposited(MultiProjector[dict[str, int]]):
    event_types: ClassVar = (MoneyDeposited,)
    codec: ClassVar[RecordingCodec]

    def initial_state(self) -> dict[str, int]:
        return {}

    def project(self, state: dict[str, int], event: Event[EventPayload]) -> dict[str, int]:
        assert isinstance(event.payload, MoneyDeposited)
        key = str(event.partition_keys.aggregate_id)
        return state | {key: state.get(key, 0) + event.payload.amount}

    def state_codec(self, serializer: Serializer) -> Any:
        return self.codec


class DepositedQuery(Query[dict[str, int]]):
    multi_projector = Deposited

    def handle(self, state: dict[str, int]) -> dict[str, int]:
        return state


async def test_a_restore_builds_the_state_with_the_collector_paused() -> None:
    Deposited.codec = RecordingCodec()
    domain = bank_domain().register(Deposited, DepositedQuery)
    states = InMemoryProjectionStore()
    first = SekibanExecutor(domain, projection_store=states)
    opened = await first.command(OpenAccount(owner="ann"))
    await first.command(DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=7))
    expected = await first.query(DepositedQuery())
    await first.close()

    second = SekibanExecutor(domain, first.event_store, projection_store=states)
    assert await second.query(DepositedQuery()) == expected
    assert second.projections.counters.restored == 1
    assert Deposited.codec.collector_enabled == [False]
    assert gc.isenabled()
