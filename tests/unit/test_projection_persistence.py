"""Persisted projection states: where their bytes go by size, and what happens when the
bytes out of line are damaged or gone."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from examples.bank import (
    AccountList,
    AccountProjector,
    ActiveAccountsQuery,
    DepositMoney,
    OpenAccount,
    bank_domain,
)
from sekiban import SekibanError, SekibanExecutor, Serializer
from sekiban.projections import (
    AggregateMapCodec,
    DirectoryBlobStore,
    InMemoryProjectionStore,
    ProjectionOptions,
    ProjectionRecord,
)
from sekiban.projections.encoding import DEFAULT_OUT_OF_LINE_BYTES, DEFAULT_SPILL_BYTES
from sekiban.stores import InMemoryEventStore


async def accounts(executor: SekibanExecutor, count: int) -> None:
    for n in range(count):
        opened = await executor.command(OpenAccount(owner=f"owner {n}"))
        await executor.command(
            DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=n + 1)
        )


def test_by_default_a_state_read_whole_into_a_row_is_smaller_than_the_spill_threshold() -> None:
    options = ProjectionOptions()
    assert options.out_of_line_above == DEFAULT_OUT_OF_LINE_BYTES <= DEFAULT_SPILL_BYTES
    assert options.spill_above == DEFAULT_SPILL_BYTES


async def test_without_a_blob_store_a_state_too_large_for_a_row_is_not_saved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    states = InMemoryProjectionStore()
    executor = SekibanExecutor(
        bank_domain(),
        projection_store=states,
        projection_options=ProjectionOptions(persist_every=1, out_of_line_above=200),
    )
    await accounts(executor, 1)
    await executor.query(ActiveAccountsQuery())
    small = await states.get(AccountList.name)
    assert small is not None and small.payload is not None and small.size <= 200

    await accounts(executor, 20)
    with caplog.at_level(logging.WARNING, "sekiban.projections"):
        await executor.query(ActiveAccountsQuery())  # caught up, then saved: refused
        assert not await executor.projections.persist(AccountList)
    assert "no blob store" in caplog.text
    assert executor.projections.counters.save_failures == 2
    assert await states.get(AccountList.name) == small  # the last state that fit stays


class UnwritableStore(InMemoryProjectionStore):
    async def save(self, record: ProjectionRecord) -> bool:
        raise OSError("disk full")


async def test_a_failing_save_neither_stops_nor_repeats_the_catch_up() -> None:
    executor = SekibanExecutor(
        bank_domain(),
        projection_store=UnwritableStore(),
        projection_options=ProjectionOptions(persist_every=3),
    )
    await accounts(executor, 4)
    # A save that keeps failing must not be retried after every batch forever.
    answer = await asyncio.wait_for(executor.query(ActiveAccountsQuery()), timeout=60)
    assert len(answer.items) == 4
    assert executor.projections.counters.save_failures == 1
    await accounts(executor, 2)
    assert len((await executor.query(ActiveAccountsQuery())).items) == 6
    assert executor.projections.counters.save_failures == 2  # tried again, once


class Damage:
    """Ways to spoil the blob a record names; each must be caught before use."""

    @staticmethod
    def flipped_byte(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    @staticmethod
    def truncated(path: Path) -> None:
        path.write_bytes(path.read_bytes()[:-10])

    @staticmethod
    def other_valid_state(path: Path) -> None:
        path.write_bytes(zlib.compress(b"[]\n"))  # well formed, not the bytes recorded

    @staticmethod
    def emptied(path: Path) -> None:
        path.write_bytes(b"")

    @staticmethod
    def missing(path: Path) -> None:
        path.unlink()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (Damage.flipped_byte, "corrupt"),
        (Damage.truncated, "corrupt"),
        (Damage.other_valid_state, "corrupt"),
        (Damage.emptied, "corrupt"),
        (Damage.missing, "missing"),
    ],
)
async def test_a_damaged_or_missing_blob_is_reported_and_the_projection_rebuilt(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    events, states = InMemoryEventStore(), InMemoryProjectionStore()
    blobs = DirectoryBlobStore(tmp_path)

    def executor() -> SekibanExecutor:
        return SekibanExecutor(
            bank_domain(),
            events,
            projection_store=states,
            projection_blob_store=blobs,
            projection_options=ProjectionOptions(persist_every=1, out_of_line_above=0),
        )

    first = executor()
    await accounts(first, 30)
    expected = await first.query(ActiveAccountsQuery())
    record = await states.get(AccountList.name)
    assert record is not None and record.blob_key is not None and record.payload is None
    damage(tmp_path / record.blob_key)

    second = executor()
    with caplog.at_level(logging.WARNING, "sekiban.projections"):
        assert await second.query(ActiveAccountsQuery()) == expected
    counters = second.projections.counters
    assert (counters.rejected, counters.restored) == (1, 0)
    assert "rebuilding from the events" in caplog.text and reason in caplog.text.lower()
    # The rebuilt state was saved again, so the next process restores it.
    await second.close()
    third = executor()
    assert await third.query(ActiveAccountsQuery()) == expected
    assert third.projections.counters.restored == 1


KEYS = "default@account@6f1c2b1e-8a52-4d0e-9a53-0c8b1f7e2d11"


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"no tab at all",
        b"   \t{}",
        b"not json\t{}",
        b'[1,2]\t{"owner":"a","balance":0}',
        b'{"a":1}\t{"owner":"a","balance":0}',
        b'["%s",1,null,"ActiveAccount"] trailing\t{"owner":"a"}' % KEYS.encode(),
        b'["%s","1",null,"ActiveAccount"]\t{"owner":"a"}' % KEYS.encode(),
        b'["NOT@keys@x",1,null,"ActiveAccount"]\t{"owner":"a"}',
        b'["%s",1,"short id","ActiveAccount"]\t{"owner":"a"}' % KEYS.encode(),
        b'["%s",1,null,"NoSuchType"]\t{"owner":"a"}' % KEYS.encode(),
        b'["%s",1,null,"ActiveAccount"]\t{"owner":' % KEYS.encode(),
        b"\xff\xfe\t{}",
    ],
)
def test_a_malformed_aggregate_line_is_refused_as_a_decoding_error(line: bytes) -> None:
    serializer = Serializer(bank_domain())
    codec = AggregateMapCodec(serializer, AccountProjector())
    with pytest.raises((ValueError, SekibanError)):
        codec.load([line])
    good = b'["%s",2,null,"ActiveAccount"]\t{"owner":"a","balance":3}' % KEYS.encode()
    (aggregate,) = codec.load([good]).values()
    assert (str(aggregate.partition_keys), aggregate.version) == (KEYS, 2)
