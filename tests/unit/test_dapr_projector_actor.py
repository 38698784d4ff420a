"""DaprProjectorActor through the SDK's actor runtime, in process (no sidecar): queries
answered from a projection kept in actor state."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from examples.bank import (
    AccountList,
    AccountProjector,
    ActiveAccount,
    ActiveAccountsQuery,
    DepositMoney,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    Aggregate,
    AggregatePayload,
    ConfigurationError,
    ConsistencyTimeoutError,
    InvalidReadError,
    PartitionKeys,
    Query,
    QueryAnswerTooLargeError,
    RemoteCommandError,
    SekibanExecutor,
    SerializationError,
    SnapshotRejectedError,
    StoredEvent,
    UnknownTypeError,
)
from sekiban.core.domain_types import DomainTypes
from sekiban.core.serialization import Serializer
from sekiban.dapr import messages
from sekiban.dapr.projection_state import record_document, record_from_document
from sekiban.dapr.projector_actor import DEFAULT_TURN_WAIT, projector_actor_id
from sekiban.dapr.results import QueryResults
from sekiban.projections import ProjectionOptions, ProjectionRecord
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.snapshot.types import RejectionReason
from sekiban.stores import InMemoryEventStore
from sekiban.testing.actors import ActorHarness
from tests.unit.test_projections import Deposits, DepositsQuery, _no_failure  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Owners:
    """Values the Dapr SDK's JSON decoder would alter (date-like and duration-like
    strings), and a date."""

    asked: str
    owners: list[str]
    on: date


OwnersAnswer = tuple[Owners, Aggregate[AggregatePayload] | None, dict[str, AggregatePayload]]


class OwnersQuery(Query[OwnersAnswer]):
    """Owners whose name starts with `prefix`, the richest, and their payloads."""

    multi_projector = AccountList
    prefix: str

    def handle(self, state: dict[PartitionKeys, Aggregate[AggregatePayload]]) -> OwnersAnswer:
        matching = sorted(
            (a for a in state.values() if getattr(a.payload, "owner", "").startswith(self.prefix)),
            key=lambda a: str(a.partition_keys),
        )
        return (
            Owners(
                self.prefix, [getattr(a.payload, "owner", "") for a in matching], date(2024, 1, 1)
            ),
            max(matching, key=lambda a: getattr(a.payload, "balance", 0), default=None),
            {str(a.partition_keys): a.payload for a in matching},
        )


@dataclasses.dataclass(frozen=True)
class Richest:
    account: Aggregate[AggregatePayload] | None


class RichestQuery(Query[Richest]):
    """An aggregate inside a dataclass of the user's: not carried across the hop."""

    multi_projector = AccountList

    def handle(self, state: dict[PartitionKeys, Aggregate[AggregatePayload]]) -> Richest:
        return Richest(next(iter(state.values()), None))


class UnregisteredQuery(Query[int]):
    multi_projector = Deposits

    def handle(self, state: dict[str, int]) -> int:
        return len(state)


def domain() -> DomainTypes:
    return bank_domain().register(Deposits, DepositsQuery, OwnersQuery, RichestQuery)


class CountingEventStore(InMemoryEventStore):
    """A real in-memory store that counts the events `read_all` hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.events_read = 0

    async def read_all(  # type: ignore[override]
        self, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        async for batch in super().read_all(after_position, batch_size):
            self.events_read += len(batch)
            yield batch


class LaggingEventStore(InMemoryEventStore):
    """Hides the last `hidden` events from `read_all` (a reader behind the writers)."""

    hidden = 0

    async def read_all(  # type: ignore[override]
        self, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        visible = len(self._all) - self.hidden
        async for batch in super().read_all(after_position, batch_size):
            kept = [e for e in batch if (e.position or 0) <= visible]
            if kept:
                yield kept


def harness(
    store: InMemoryEventStore | None = None, persist_every: int = 10_000, **options: Any
) -> ActorHarness:
    return ActorHarness(
        domain(),
        store or InMemoryEventStore(),
        projection_options=ProjectionOptions(persist_every=persist_every),
        **options,
    )


async def open_accounts(executor: ActorHarness, count: int, deposits: int = 2) -> None:
    for i in range(count):
        opened = await executor.command(OpenAccount(owner=f"2024-01-0{i % 9 + 1} #{i}"))
        for amount in range(1, deposits + 1):
            await executor.command(
                DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=amount)
            )


QUERIES: list[Query[Any]] = [
    ActiveAccountsQuery(min_balance=2),
    ActiveAccountsQuery(page_size=2, page_number=2),
    DepositsQuery(),
    OwnersQuery(prefix="2024-01-0"),
    OwnersQuery(prefix="10s"),
]


@pytest.mark.parametrize("query", QUERIES, ids=repr)
async def test_an_actor_answers_as_the_local_executor_does(query: Query[Any]) -> None:
    h = harness()
    await open_accounts(h, 5)
    local = SekibanExecutor(domain(), h.event_store)

    answer = await h.query(query)

    assert answer == await local.query(query)
    assert type(answer) is type(await local.query(query))


async def test_aggregates_in_an_answer_keep_their_payload_type() -> None:
    h = harness()
    await open_accounts(h, 2, deposits=3)

    owners, richest, payloads = await h.query(OwnersQuery(prefix="2024"))

    assert richest is not None and isinstance(richest.payload, ActiveAccount)
    assert len(payloads) == 2 and all(isinstance(p, ActiveAccount) for p in payloads.values())
    assert owners.asked == "2024" and owners.on == date(2024, 1, 1)
    assert sorted(owners.owners) == ["2024-01-01 #0", "2024-01-02 #1"]


async def test_an_answer_type_that_cannot_carry_an_aggregate_is_refused_before_sending() -> None:
    h = harness()
    await open_accounts(h, 1)
    with pytest.raises(ConfigurationError, match="RichestQuery"):
        await h.query(RichestQuery())
    assert h.active_projector(AccountList) is None


async def test_a_deactivated_actor_restores_its_state_and_reads_only_new_events() -> None:
    store = CountingEventStore()
    h = harness(store)
    await open_accounts(h, 3)
    first = await h.query(DepositsQuery())
    # The flush timers of the projector (which saves its record) and of the 3 accounts.
    assert await h.fire_timers() == 4
    await h.deactivate_projector(Deposits)
    saved = h.stored_projection(Deposits)
    assert saved is not None and saved.position == 9

    await open_accounts(h, 1)  # 3 more events
    store.events_read = 0
    answer = await h.query(DepositsQuery())

    actor = h.active_projector(Deposits)
    assert actor is not None and actor.projections.counters.restored == 1
    assert store.events_read == 3
    assert len(answer) == len(first) + 1
    assert answer == await SekibanExecutor(domain(), store).query(DepositsQuery())


async def test_a_lost_actor_resumes_from_its_last_checkpoint_and_equals_a_full_replay() -> None:
    store = CountingEventStore()
    h = harness(store, persist_every=4)
    await open_accounts(h, 2)  # 4 deposits: saved at the first query
    await h.query(DepositsQuery())
    await open_accounts(h, 1)  # 2 more deposits: applied, not saved
    await h.query(DepositsQuery())
    saved = h.stored_projection(Deposits)
    assert saved is not None and saved.events_applied == 4

    h.forget_projector(Deposits)  # its host is killed: no deactivation, no save
    store.events_read = 0
    answer = await h.query(DepositsQuery())

    assert store.events_read == 9 - saved.position
    assert answer == await SekibanExecutor(domain(), store).query(DepositsQuery())
    status = await h.projector_status(Deposits)
    assert (status.name, status.position, status.events_applied) == ("deposits", 9, 6)
    assert status.checkpoint == saved.position == 6  # restored from it, not saved since
    assert (status.lag_events, status.last_error) == (0, None)


async def test_the_status_of_a_projection_built_from_the_events_names_no_checkpoint() -> None:
    h = harness()
    await open_accounts(h, 1)
    status = await h.projector_status("deposits")
    assert (status.position, status.checkpoint, status.lag_events) == (3, None, 0)


async def test_the_status_names_the_error_that_stopped_the_projection() -> None:
    h = harness()
    await open_accounts(h, 2, deposits=2)
    Deposits.fail_on = 2
    status = await h.projector_status(Deposits)
    assert status.last_error is not None and "MoneyDeposited" in status.last_error
    assert (status.events_applied, status.lag_events) == (1, 4)


def corrupted(record: bytes) -> list[bytes]:
    """Ways a record in actor state can be damaged."""
    good = record_from_document("deposits", record)
    flipped = bytes([good.payload[0] ^ 1]) + good.payload[1:] if good.payload else b"x"
    return [
        b'"not a record"',
        record[: len(record) // 2],
        record_document(dataclasses.replace(good, payload=flipped)),
        record_document(dataclasses.replace(good, name="another-projector")),
        record_document(dataclasses.replace(good, projector_version="0")),
        json.dumps({**json.loads(record), "position": "x9"}).encode(),
    ]


@pytest.mark.parametrize("damage", range(6))
async def test_a_damaged_record_in_actor_state_is_rebuilt_from_the_events(damage: int) -> None:
    h = harness()
    await open_accounts(h, 3)
    await h.query(DepositsQuery())
    await h.fire_timers()
    await h.deactivate_projector(Deposits)
    key = h.stored_projection_key(Deposits)
    h.actor_client.state[key] = corrupted(h.actor_client.state[key])[damage]

    answer = await h.query(DepositsQuery())

    actor = h.active_projector(Deposits)
    assert actor is not None
    assert (actor.projections.counters.rejected, actor.projections.counters.restored) == (1, 0)
    assert answer == await SekibanExecutor(domain(), h.event_store).query(DepositsQuery())
    await h.fire_timers()  # the rebuilt state replaces the damaged one
    replaced = h.stored_projection(Deposits)
    assert replaced is not None and replaced.position == 9


async def test_with_signing_an_unsigned_record_in_actor_state_is_refused() -> None:
    unsigned = harness()
    await open_accounts(unsigned, 2)
    await unsigned.query(DepositsQuery())
    await unsigned.fire_timers()
    signing = SnapshotSigning("k1", b"0123456789abcdef0123")
    signed = ActorHarness(
        domain(),
        unsigned.event_store,
        projection_options=ProjectionOptions(signing=signing),
    )
    signed.actor_client.state = dict(unsigned.actor_client.state)  # the same actor state

    answer = await signed.query(DepositsQuery())
    await signed.fire_timers()

    actor = signed.active_projector(Deposits)
    assert actor is not None and actor.projections.counters.rejected == 1
    assert answer == await unsigned.query(DepositsQuery())
    record = signed.stored_projection(Deposits)
    assert record is not None and signing.check(record.signature, record.canonical_form()) is None


async def test_deactivation_as_on_daprd_saves_nothing_and_the_timer_save_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = harness()
    await open_accounts(h, 1)
    await h.query(DepositsQuery())
    await h.fire_timers()
    await open_accounts(h, 1)
    await h.query(DepositsQuery())  # 2 more deposits, not saved
    actor = h.active_projector(Deposits)
    assert actor is not None

    with caplog.at_level(logging.WARNING, "sekiban.projections"):
        await h.deactivate_projector(Deposits)  # refused, logged, counted: not raised

    assert "ERR_ACTOR_INSTANCE_MISSING" in caplog.text
    assert actor.projections.counters.save_failures == 1
    saved = h.stored_projection(Deposits)
    assert saved is not None and saved.position == 3
    assert sorted((await h.query(DepositsQuery())).values()) == [3, 3]


async def test_the_flush_timer_saves_only_what_was_applied_since_the_last_save() -> None:
    h = harness()
    await open_accounts(h, 1)
    await h.query(DepositsQuery())
    actor = h.active_projector(Deposits)
    assert actor is not None and h.stored_projection(Deposits) is None

    await h.fire_timers()
    await h.fire_timers()  # nothing new: nothing written
    assert actor.projections.counters.saved == 1

    await open_accounts(h, 1)
    await h.query(DepositsQuery())
    await h.fire_timers()
    saved = h.stored_projection(Deposits)
    assert actor.projections.counters.saved == 2
    assert saved is not None and saved.position == 6


async def test_after_waits_until_the_projection_has_the_command() -> None:
    store = LaggingEventStore()
    h = harness(store)
    await open_accounts(h, 1, deposits=1)
    store.hidden = 1
    response = await h.command(OpenAccount(owner="late"))
    stale = await h.query(ActiveAccountsQuery())
    assert stale.total_count == 1

    async def writer_catches_up() -> None:
        await asyncio.sleep(0.05)
        store.hidden = 0

    answer, _ = await asyncio.gather(
        h.query(ActiveAccountsQuery(), after=response), writer_catches_up()
    )
    assert answer.total_count == 2
    assert (await h.query(ActiveAccountsQuery(), after=response.consistency_token)).total_count == 2


async def test_after_that_is_never_reached_times_out_as_it_does_locally() -> None:
    store = LaggingEventStore()
    h = harness(store)
    store.hidden = 1
    response = await h.command(OpenAccount(owner="never seen"))

    with pytest.raises(ConsistencyTimeoutError, match="account-list"):
        await h.query(ActiveAccountsQuery(), after=response, timeout=timedelta(milliseconds=50))
    with pytest.raises(InvalidReadError, match="no event at version 7"):
        await h.query(ActiveAccountsQuery(), after=f"{response.partition_keys}@7")


async def test_a_query_waiting_for_after_does_not_hold_back_the_projections_other_queries() -> None:
    # daprd runs one call of an actor at a time (the harness too): a query that waited
    # inside its call for `after` would keep every other query of the projection out.
    store = LaggingEventStore()
    h = harness(store)
    await open_accounts(h, 1, deposits=1)
    store.hidden = 1
    response = await h.command(OpenAccount(owner="late"))

    waiting = asyncio.create_task(
        h.query(ActiveAccountsQuery(), after=response, timeout=timedelta(seconds=5))
    )
    await asyncio.sleep(0.05)  # the waiting query is in the actor first
    plain = asyncio.create_task(h.query(ActiveAccountsQuery()))
    done, _ = await asyncio.wait({waiting, plain}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {plain}
    assert plain.result().total_count == 1  # what the projection has applied

    store.hidden = 0
    assert (await waiting).total_count == 2


async def test_after_waits_across_turns_for_as_long_as_the_caller_allows() -> None:
    # The wait is the caller's: one turn of the actor is short, and the executor asks
    # again until its own timeout has passed.
    store = LaggingEventStore()
    h = harness(store)
    store.hidden = 1
    response = await h.command(OpenAccount(owner="late"))

    async def writer_catches_up() -> None:
        await asyncio.sleep(3 * DEFAULT_TURN_WAIT.total_seconds())
        store.hidden = 0

    answer, _ = await asyncio.gather(
        h.query(ActiveAccountsQuery(), after=response, timeout=timedelta(seconds=10)),
        writer_catches_up(),
    )
    assert answer.total_count == 1
    store.hidden = 1
    late = await h.command(OpenAccount(owner="later"))
    with pytest.raises(ConsistencyTimeoutError, match=r"within 0\.5 s"):
        await h.query(ActiveAccountsQuery(), after=late, timeout=timedelta(milliseconds=500))


async def test_a_state_over_the_actor_state_limit_is_kept_in_memory_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = harness(max_projection_state_bytes=300)
    await open_accounts(h, 4)
    first = await h.query(ActiveAccountsQuery())
    actor = h.active_projector(AccountList)
    assert actor is not None

    with caplog.at_level(logging.WARNING, "sekiban.projections"):
        await h.fire_timers()
    await h.deactivate_projector(AccountList)  # tries once more

    assert h.stored_projection(AccountList) is None
    assert actor.projections.counters.save_failures == 2
    assert "over the limit of 300" in caplog.text
    assert await h.query(ActiveAccountsQuery()) == first  # rebuilt from the events


def chunk_keys(h: ActorHarness) -> list[str]:
    return sorted(key for _, _, key in h.actor_client.state if key.startswith("blob:"))


async def chunked(h: ActorHarness) -> ProjectionRecord:
    """Save AccountList through the flush timer; its record, which must be out of line."""
    await h.fire_timers()
    record = h.stored_projection(AccountList)
    assert record is not None and record.payload is None and record.blob_key is not None
    return record


def small_state_limit() -> ActorHarness:
    # Uncompressed, 10 accounts are about 3 KB: 2 KB values make several chunks.
    options = ProjectionOptions(compression_level=None)
    return ActorHarness(domain(), projection_options=options, max_projection_state_bytes=2_000)


async def test_a_state_too_large_for_one_value_is_kept_in_chunks_and_restored() -> None:
    h = small_state_limit()
    await open_accounts(h, 10)
    first = await h.query(ActiveAccountsQuery())
    record = await chunked(h)
    keys = chunk_keys(h)
    assert len(keys) >= 3 and f"blob:account-list:{record.sha256}" in keys
    assert all(
        len(h.actor_client.state[("DaprProjectorActor", "account-list", k)]) <= 2_000 for k in keys
    )

    await h.deactivate_projector(AccountList)
    assert await h.query(ActiveAccountsQuery()) == first
    actor = h.active_projector(AccountList)
    assert actor is not None and actor.projections.counters.restored == 1


async def test_the_chunks_of_a_replaced_state_are_deleted_after_the_new_record() -> None:
    h = small_state_limit()
    await open_accounts(h, 10)
    await h.query(ActiveAccountsQuery())
    old = await chunked(h)
    await open_accounts(h, 1)
    await h.query(ActiveAccountsQuery())
    new = await chunked(h)

    keys = chunk_keys(h)
    assert new.sha256 != old.sha256
    assert not [k for k in keys if old.sha256 in k]
    assert f"blob:account-list:{new.sha256}" in keys


@pytest.mark.parametrize("damage", ["missing chunk", "flipped byte", "not base64", "no count"])
async def test_a_damaged_chunked_state_is_rebuilt_from_the_events(damage: str) -> None:
    h = small_state_limit()
    await open_accounts(h, 10)
    first = await h.query(ActiveAccountsQuery())
    record = await chunked(h)
    await h.deactivate_projector(AccountList)
    head = ("DaprProjectorActor", "account-list", f"blob:account-list:{record.sha256}")
    chunk = (*head[:2], f"{head[2]}:1")
    if damage == "missing chunk":
        del h.actor_client.state[chunk]
    elif damage == "flipped byte":
        data = base64.b64decode(json.loads(h.actor_client.state[chunk]))
        flipped = bytes([data[0] ^ 1]) + data[1:]
        h.actor_client.state[chunk] = json.dumps(base64.b64encode(flipped).decode()).encode()
    elif damage == "not base64":
        h.actor_client.state[chunk] = b'"!!"'
    else:
        h.actor_client.state[head] = b'{"chunks": "three"}'

    assert await h.query(ActiveAccountsQuery()) == first
    actor = h.active_projector(AccountList)
    assert actor is not None
    assert (actor.projections.counters.rejected, actor.projections.counters.restored) == (1, 0)


async def test_an_answer_over_the_reply_limit_is_refused_and_a_page_of_it_is_not() -> None:
    h = harness(max_query_answer_bytes=2_000)
    await open_accounts(h, 10)

    with pytest.raises(QueryAnswerTooLargeError, match="over the limit of 2000"):
        await h.query(ActiveAccountsQuery())

    page = await h.query(ActiveAccountsQuery(page_size=2))
    assert (len(page.items), page.total_count) == (2, 10)


async def test_a_projector_error_is_named_and_the_next_query_applies_nothing_twice() -> None:
    h = harness()
    await open_accounts(h, 2, deposits=2)
    Deposits.fail_on = 2

    with pytest.raises(RemoteCommandError) as raised:
        await h.query(DepositsQuery())

    assert raised.value.error_type == "ProjectionError"
    assert "MoneyDeposited" in raised.value.message
    Deposits.fail_on = None
    answer = await h.query(DepositsQuery())
    assert sorted(answer.values()) == [3, 3]


async def test_an_unregistered_query_is_refused_before_anything_is_sent() -> None:
    h = harness()
    with pytest.raises(UnknownTypeError, match="UnregisteredQuery"):
        await h.query(UnregisteredQuery())
    assert h.active_projector(Deposits) is None


async def test_a_query_sent_to_another_projectors_actor_is_refused() -> None:
    h = harness()
    body = messages.query_request(Serializer(domain()), DepositsQuery(), None, timedelta(seconds=1))
    reply = await h._call(
        projector_actor_id(AccountList.name), "Query", body, actor_type="DaprProjectorActor"
    )
    with pytest.raises(RemoteCommandError, match=r"ConfigurationError.*deposits"):
        messages.parse_query_reply(reply)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a#b", "a?b", "a b", "a\\b", "a\x00"])
def test_a_projector_name_dapr_cannot_route_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot be a Dapr actor id"):
        projector_actor_id(name)


def test_a_projection_record_round_trips_through_its_actor_state_document() -> None:
    digest = "ab" * 32
    record = ProjectionRecord(
        "deposits", "1", "fp", 10**45, 6, datetime.now(UTC), "zlib+jsonl", 3, digest, b"\x00\n"
    )
    assert record_from_document("deposits", record_document(record)) == record
    out_of_line = dataclasses.replace(record, payload=None, blob_key="deposits/ab", signature="s")
    assert record_from_document("deposits", record_document(out_of_line)) == out_of_line
    document = record_document(record)
    for bad in (
        b"{",
        b"[]",
        b'{"format": "other"}',
        document.replace(b'"events_applied":6', b'"events_applied":true'),
        document.replace(b'"position":"', b'"position":"-'),
        document.replace(b'"payload":"', b'"payload":"!'),
    ):
        with pytest.raises(SnapshotRejectedError) as raised:
            record_from_document("deposits", bad)
        assert raised.value.rejection.reason is RejectionReason.CORRUPT, bad
    with pytest.raises(SnapshotRejectedError, match="named 'deposits'"):
        record_from_document("other", document)


def test_an_answer_that_does_not_fit_its_declared_type_is_a_serialization_error() -> None:
    results = QueryResults(Serializer(domain()))
    with pytest.raises(SerializationError, match="DepositsQuery"):
        results.load(DepositsQuery, b'{"a": "not a number"}')
    with pytest.raises(SerializationError, match="DepositsQuery"):
        results.dump(DepositsQuery, {"a": object()})


async def test_the_aggregate_actor_and_projector_actor_share_one_host() -> None:
    h = harness()
    opened = await h.command(OpenAccount(owner="ann"))
    await h.query(ActiveAccountsQuery())
    assert h.active_actor(AccountProjector, opened.partition_keys) is not None
    assert h.active_projector(AccountList) is not None
