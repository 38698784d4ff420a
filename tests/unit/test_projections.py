"""Multi-projections: per-event catch-up, filters, persistence, rebuilds, read-your-writes."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from examples.bank import (
    AccountList,
    ActiveAccountsQuery,
    DepositMoney,
    MoneyDeposited,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    ConfigurationError,
    ConsistencyTimeoutError,
    Event,
    EventPayload,
    InvalidReadError,
    MultiProjector,
    PartitionKeys,
    ProjectionError,
    Query,
    SekibanExecutor,
    SnapshotRejectedError,
    SortableUniqueId,
    StoredEvent,
)
from sekiban.projections import (
    ConsistencyToken,
    DirectoryBlobStore,
    InMemoryProjectionStore,
    JsonStateCodec,
    ProjectionOptions,
)
from sekiban.projections.encoding import decode_lines, encode_state
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.snapshot.types import RejectionReason
from sekiban.stores import InMemoryEventStore


class Deposits(MultiProjector[dict[str, int]]):
    """Sums deposits per account; raises on the amount in `fail_on`."""

    event_types: ClassVar = (MoneyDeposited,)
    fail_on: ClassVar[int | None] = None

    def initial_state(self) -> dict[str, int]:
        return {}

    def project(self, state: dict[str, int], event: Event[EventPayload]) -> dict[str, int]:
        assert isinstance(event.payload, MoneyDeposited)
        key = str(event.partition_keys.aggregate_id)
        state[key] = state.get(key, 0) + event.payload.amount  # in place, on purpose
        if event.payload.amount == self.fail_on:
            raise RuntimeError("projector bug")
        return state


class DepositsQuery(Query[dict[str, int]]):
    multi_projector = Deposits

    def handle(self, state: dict[str, int]) -> dict[str, int]:
        return dict(state)


def domain() -> Any:
    return bank_domain().register(Deposits, DepositsQuery)


@pytest.fixture(autouse=True)
def _no_failure() -> Any:
    yield
    Deposits.fail_on = None


async def open_with(executor: SekibanExecutor, *amounts: int) -> PartitionKeys:
    opened = await executor.command(OpenAccount(owner="ann"))
    for amount in amounts:
        await executor.command(
            DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=amount)
        )
    return opened.partition_keys


async def test_a_projector_error_leaves_the_projection_after_the_last_event_it_applied() -> None:
    executor = SekibanExecutor(domain())
    keys = await open_with(executor, 10, 20, 30)
    Deposits.fail_on = 20
    with pytest.raises(ProjectionError) as raised:
        await executor.query(DepositsQuery())
    assert raised.value.event_type == "MoneyDeposited"
    assert raised.value.partition_keys == str(keys)
    assert isinstance(raised.value.__cause__, RuntimeError)
    Deposits.fail_on = None
    # The failed call had added 20 in place: that state is never answered from, and no
    # event before the failure is applied twice.
    assert await executor.query(DepositsQuery()) == {str(keys.aggregate_id): 60}


async def test_the_aggregate_list_survives_a_failing_query_without_double_application() -> None:
    executor = SekibanExecutor(domain())
    keys = await open_with(executor, 5)
    Deposits.fail_on = 5
    with pytest.raises(ProjectionError):
        await executor.query(DepositsQuery())
    result = await executor.query(ActiveAccountsQuery())
    assert [a.version for a in result.items] == [2]
    assert result.items[0].partition_keys == keys


async def poison(store: InMemoryEventStore, group: str, event_type: str) -> None:
    keys = PartitionKeys.generate(group)
    stamp = datetime.now(UTC)
    event = StoredEvent(
        "00000000-0000-0000-0000-000000000001",
        SortableUniqueId.generate(),
        1,
        keys,
        event_type,
        "{not json",
        stamp,
    )
    await store.append([event], 0)


async def test_an_undecodable_event_of_another_group_does_not_stop_the_account_list() -> None:
    store = InMemoryEventStore()
    executor = SekibanExecutor(domain(), store)
    await open_with(executor, 1)
    await poison(store, "other-group", "MoneyDeposited")
    await open_with(executor, 2)
    result = await executor.query(ActiveAccountsQuery())
    assert result.total_count == 2


async def test_events_of_types_a_projector_does_not_read_are_never_decoded() -> None:
    store = InMemoryEventStore()
    executor = SekibanExecutor(domain(), store)
    await poison(store, AccountList.projector.name, "NoSuchEvent")
    await poison(store, AccountList.projector.name, "AccountOpened")
    keys = await open_with(executor, 7)
    assert await executor.query(DepositsQuery()) == {str(keys.aggregate_id): 7}
    # A projector that reads everything names the event it cannot decode.
    with pytest.raises(ProjectionError, match="NoSuchEvent"):
        await executor.query(ActiveAccountsQuery())


async def test_a_restarted_process_resumes_from_the_persisted_state() -> None:
    events, states = InMemoryEventStore(), InMemoryProjectionStore()
    first = SekibanExecutor(
        domain(),
        events,
        projection_store=states,
        projection_options=ProjectionOptions(persist_every=1),
    )
    keys = await open_with(first, 10, 20)
    await first.query(ActiveAccountsQuery())
    await first.query(DepositsQuery())
    saved = await states.get(AccountList.name)
    assert saved is not None and saved.position == 3

    await open_with(first, 5)  # after the save: the restart reads only these
    second = SekibanExecutor(domain(), events, projection_store=states)
    answer = await second.query(ActiveAccountsQuery())
    assert second.projections.counters.restored == 1
    fresh = await SekibanExecutor(domain(), events).query(ActiveAccountsQuery())
    assert answer == fresh
    assert {a.partition_keys for a in answer.items} >= {keys}
    deposits = await second.query(DepositsQuery())
    assert sorted(deposits.values()) == [5, 30]


async def test_a_state_of_another_projector_version_or_a_corrupt_one_is_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, states = InMemoryEventStore(), InMemoryProjectionStore()
    options = ProjectionOptions(persist_every=1)
    first = SekibanExecutor(domain(), events, projection_store=states, projection_options=options)
    await open_with(first, 10)
    await first.query(DepositsQuery())
    record = await states.get(Deposits.name)
    assert record is not None and record.payload is not None

    monkeypatch.setattr(Deposits, "version", "2")
    bumped = SekibanExecutor(domain(), events, projection_store=states)
    assert sorted((await bumped.query(DepositsQuery())).values()) == [10]
    assert bumped.projections.counters.rejected == 1
    monkeypatch.undo()

    damaged = dataclasses.replace(record, payload=record.payload[:-3] + b"xyz")
    await states.delete(Deposits.name)
    await states.save(damaged)
    third = SekibanExecutor(domain(), events, projection_store=states)
    assert sorted((await third.query(DepositsQuery())).values()) == [10]
    assert (third.projections.counters.rejected, third.projections.counters.restored) == (1, 0)


async def test_with_signing_an_unsigned_or_forged_state_is_not_used() -> None:
    events, states = InMemoryEventStore(), InMemoryProjectionStore()
    signing = SnapshotSigning("k1", b"0123456789abcdef0123")
    unsigned = SekibanExecutor(
        domain(),
        events,
        projection_store=states,
        projection_options=ProjectionOptions(persist_every=1),
    )
    await open_with(unsigned, 10)
    await unsigned.query(DepositsQuery())
    signed = SekibanExecutor(
        domain(),
        events,
        projection_store=states,
        projection_options=ProjectionOptions(persist_every=1, signing=signing),
    )
    await signed.query(DepositsQuery())
    assert signed.projections.counters.rejected == 1
    record = await states.get(Deposits.name)
    assert record is not None and record.signature and record.signature.startswith("k1:")
    again = SekibanExecutor(
        domain(),
        events,
        projection_store=states,
        projection_options=ProjectionOptions(signing=signing),
    )
    await again.query(DepositsQuery())
    assert again.projections.counters.restored == 1


async def test_large_states_go_out_of_line_and_a_missing_blob_means_a_rebuild(
    tmp_path: Path,
) -> None:
    events, states = InMemoryEventStore(), InMemoryProjectionStore()
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    options = ProjectionOptions(persist_every=1, out_of_line_above=0)

    def executor() -> SekibanExecutor:
        executor = SekibanExecutor(
            domain(), events, projection_store=states, projection_options=options
        )
        executor.projections.blob_store = blobs
        return executor

    first = executor()
    await open_with(first, 10)
    await first.query(DepositsQuery())
    old = await states.get(Deposits.name)
    assert old is not None and old.payload is None and old.blob_key
    await open_with(first, 20)
    await first.query(DepositsQuery())
    new = await states.get(Deposits.name)
    assert new is not None and new.blob_key != old.blob_key
    # The blob the old row named is gone once the new row names its own.
    assert sorted(p.name for p in (tmp_path / "blobs" / Deposits.name).iterdir()) == [new.sha256]

    second = executor()
    assert sorted((await second.query(DepositsQuery())).values()) == [10, 20]
    assert second.projections.counters.restored == 1
    assert new.blob_key is not None
    await blobs.delete(new.blob_key)
    third = executor()
    assert sorted((await third.query(DepositsQuery())).values()) == [10, 20]
    assert third.projections.counters.rejected == 1


async def test_rebuild_switches_to_a_state_built_from_position_zero() -> None:
    executor = SekibanExecutor(domain(), projection_store=InMemoryProjectionStore())
    await open_with(executor, 3, 4)
    before = await executor.query(DepositsQuery())
    seen: list[int] = []
    rebuilt = await executor.projections.rebuild(Deposits, progress=seen.append)
    assert rebuilt.state == before and seen and seen[-1] == rebuilt.position
    assert executor.projections.counters.saved >= 1


async def test_a_query_after_a_command_includes_its_events() -> None:
    executor = SekibanExecutor(domain())
    opened = await executor.command(OpenAccount(owner="bo"))
    deposit = DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=9)
    response = await executor.command(deposit)
    for after in (response, response.consistency_token, ConsistencyToken.of(response)):
        answer = await executor.query(DepositsQuery(), after=after)
        assert answer == {str(opened.partition_keys.aggregate_id): 9}
    assert str(ConsistencyToken.parse(response.consistency_token)) == response.consistency_token


@pytest.mark.parametrize("token", ["", "nonsense", "a@b@c@x", "default@acct@1"])
async def test_a_malformed_consistency_token_is_refused(token: str) -> None:
    executor = SekibanExecutor(domain())
    with pytest.raises(InvalidReadError):
        await executor.query(DepositsQuery(), after=token)


class LaggingStore(InMemoryEventStore):
    """A replica that has not received anything yet: every global read is empty."""

    async def read_all(  # type: ignore[override]
        self, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        for _ in ():
            yield []


async def test_waiting_for_a_write_the_projection_cannot_reach_times_out() -> None:
    executor = SekibanExecutor(domain(), LaggingStore())
    response = await executor.command(OpenAccount(owner="cy"))
    with pytest.raises(ConsistencyTimeoutError, match="did not reach position 1"):
        await executor.query(ActiveAccountsQuery(), after=response, timeout=timedelta(seconds=0.05))


def test_an_encoded_state_spills_to_disk_past_the_threshold_and_reads_back() -> None:
    lines = [b'{"n":%d}' % n for n in range(20_000)]
    with encode_state(iter(lines), spill_above=4096) as encoded:
        assert encoded.file._rolled  # type: ignore[attr-defined]
        back = list(decode_lines(encoded.chunks(1000), encoded.encoding, encoded.sha256))
    assert back == lines
    with encode_state(iter(lines), compression_level=None) as plain:
        assert plain.size == plain.raw_size == sum(len(line) + 1 for line in lines)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: data[:-5], RejectionReason.CORRUPT),
        (lambda data: data[:10] + bytes([data[10] ^ 1]) + data[11:], RejectionReason.CORRUPT),
        (lambda data: b"not zlib at all", RejectionReason.CORRUPT),
    ],
)
def test_damaged_state_bytes_are_rejected(damage: Any, reason: RejectionReason) -> None:
    with encode_state(iter([b"[1,2,3]"] * 100)) as encoded:
        data, sha = encoded.read(), encoded.sha256
    with pytest.raises(SnapshotRejectedError) as raised:
        list(decode_lines([damage(data)], "zlib+jsonl", sha))
    assert raised.value.rejection.reason is reason


def test_a_state_that_inflates_beyond_the_limit_is_refused_while_inflating() -> None:
    bomb = zlib.compress(b"[" + b"0," * 5_000_000 + b"0]\n")
    import hashlib

    with pytest.raises(SnapshotRejectedError) as raised:
        list(
            decode_lines([bomb], "zlib+jsonl", hashlib.sha256(bomb).hexdigest(), max_bytes=1 << 20)
        )
    assert raised.value.rejection.reason is RejectionReason.TOO_LARGE
    with pytest.raises(SnapshotRejectedError):
        encode_state(iter([b"x" * 100] * 100), max_bytes=1000)


def test_the_default_codec_writes_one_entry_per_line() -> None:
    codec = JsonStateCodec(dict[str, int])
    lines = list(codec.dump({"a": 1, "b": 2}))
    assert lines == [b'["a",1]', b'["b",2]']
    assert codec.load(iter(lines)) == {"a": 1, "b": 2}
    assert JsonStateCodec(list[int]).load(iter([b"1", b"2"])) == [1, 2]
    assert JsonStateCodec(int).load(iter([b"5"])) == 5

    class Untyped(MultiProjector):  # type: ignore[type-arg]
        def initial_state(self) -> Any:
            return {}

        def project(self, state: Any, event: Event[EventPayload]) -> Any:
            return state

    with pytest.raises(ConfigurationError, match="state type"):
        JsonStateCodec.for_projector(Untyped)

    class Opaque:
        pass

    with pytest.raises(ConfigurationError, match="cannot persist"):
        JsonStateCodec(dict[str, Opaque])
