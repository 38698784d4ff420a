"""Spans and metrics through the OpenTelemetry SDK's in-memory exporter and reader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from examples.bank import (
    AccountProjector,
    ActiveAccountsQuery,
    DepositMoney,
    InsufficientFundsError,
    OpenAccount,
    WithdrawMoney,
    bank_domain,
)
from sekiban import PartitionKeys, RetryPolicy, SekibanExecutor, StoredEvent, telemetry
from sekiban.dapr.app import TraceContextMiddleware
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import InMemoryEventStore, InMemorySnapshotStore
from sekiban.testing.actors import ActorHarness
from tests.conftest import Telemetry


def snapshot_every(count: int) -> SnapshotConfiguration:
    return SnapshotConfiguration(strategy="count", count_threshold=count)


async def open_with_deposits(executor: SekibanExecutor | ActorHarness, n: int) -> PartitionKeys:
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(n):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    return keys


async def test_command_with_snapshot_and_delta_load_is_one_span_tree(otel: Telemetry) -> None:
    executor = SekibanExecutor(
        bank_domain(), snapshot_store=InMemorySnapshotStore(), snapshot_config=snapshot_every(3)
    )
    keys = await open_with_deposits(executor, 3)  # snapshot at version 3
    otel.exporter.clear()
    response = await executor.command(
        DepositMoney(account_id=keys.aggregate_id, amount=5), command_id="cmd-1"
    )

    command = otel.span("sekiban.command")
    assert command.parent is None
    assert otel.children(command) == ["sekiban.load", "sekiban.decide", "sekiban.append"]
    assert command.attributes == {
        "sekiban.command.type": "DepositMoney",
        "sekiban.command.id": "cmd-1",
        "sekiban.aggregate.projector": "account",
        "sekiban.aggregate.partition_keys": str(keys),
        "sekiban.aggregate.id": str(keys.aggregate_id),
        "sekiban.aggregate.group": keys.group,
        "sekiban.aggregate.root_partition_key": keys.root_partition_key,
        "sekiban.events.appended": 1,
        "sekiban.aggregate.version": response.version,
    }
    load = otel.span("sekiban.load")
    assert load.attributes is not None
    assert load.attributes["sekiban.snapshot.used"] is True
    assert load.attributes["sekiban.snapshot.version"] == 3
    assert load.attributes["sekiban.events.replayed"] == 1
    assert load.attributes["sekiban.projector.version"] == AccountProjector.version
    append = otel.span("sekiban.append")
    assert append.attributes == {"sekiban.events.count": 1, "sekiban.expected_version": 4}


async def test_snapshot_save_is_a_child_span_of_the_command(otel: Telemetry) -> None:
    executor = SekibanExecutor(
        bank_domain(), snapshot_store=InMemorySnapshotStore(), snapshot_config=snapshot_every(2)
    )
    await open_with_deposits(executor, 1)
    command = otel.spans("sekiban.command")[-1]
    assert otel.children(command) == [
        "sekiban.load",
        "sekiban.decide",
        "sekiban.append",
        "sekiban.snapshot",
    ]
    snapshot = otel.span("sekiban.snapshot")
    assert snapshot.attributes == {
        "sekiban.aggregate.version": 2,
        "sekiban.snapshot.replaces_rejected": False,
    }
    assert otel.counted("sekiban.snapshots.taken", **{"sekiban.snapshot.outcome": "saved"}) == 1


class FailingSnapshotStore(InMemorySnapshotStore):
    async def save(self, snapshot: object) -> bool:
        raise OSError("disk full")


async def test_failed_snapshot_save_is_an_error_span_and_the_command_succeeds(
    otel: Telemetry,
) -> None:
    executor = SekibanExecutor(
        bank_domain(), snapshot_store=FailingSnapshotStore(), snapshot_config=snapshot_every(1)
    )
    await executor.command(OpenAccount(owner="ann"))
    snapshot = otel.span("sekiban.snapshot")
    assert snapshot.status.status_code is StatusCode.ERROR
    assert [e.name for e in snapshot.events] == ["exception"]
    assert otel.span("sekiban.command").status.status_code is StatusCode.UNSET
    assert otel.counted("sekiban.snapshots.taken", **{"sekiban.snapshot.outcome": "failed"}) == 1


class InterleavingStore(InMemoryEventStore):
    """Lets another writer append just before the next append, once: a lost race."""

    armed: PartitionKeys | None = None

    async def append(
        self, events: Sequence[StoredEvent], expected_version: int, **kwargs: object
    ) -> None:
        keys, self.armed = self.armed, None
        if keys is not None:
            other = SekibanExecutor(bank_domain(), self)
            await other.command(DepositMoney(account_id=keys.aggregate_id, amount=100))
        await super().append(events, expected_version, **kwargs)  # type: ignore[arg-type]


async def test_conflict_retry_shows_on_the_command_span_and_in_metrics(otel: Telemetry) -> None:
    store = InterleavingStore()
    executor = SekibanExecutor(bank_domain(), store)
    keys = await open_with_deposits(executor, 0)
    otel.exporter.clear()
    store.armed = keys
    await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))

    command = [s for s in otel.spans("sekiban.command") if s.parent is None][-1]
    assert command.attributes is not None
    assert command.attributes["sekiban.command.attempts"] == 2
    assert command.attributes["sekiban.aggregate.version"] == 3
    (retry,) = command.events
    assert retry.name == "sekiban.retry"
    assert dict(retry.attributes or {})["sekiban.retry.reason"] == "conflict"
    children = otel.children(command)
    assert children == [
        "sekiban.load",
        "sekiban.decide",
        "sekiban.append",
        "sekiban.catch_up",
        "sekiban.decide",
        "sekiban.append",
    ]
    lost = [s for s in otel.spans("sekiban.append") if s.status.status_code is StatusCode.ERROR]
    assert len(lost) == 1
    assert lost[0].events[0].attributes is not None
    assert lost[0].events[0].attributes["exception.type"] == "sekiban.errors.ConcurrencyError"
    assert (
        otel.counted("sekiban.command.conflicts", **{"sekiban.command.type": "DepositMoney"}) == 1
    )
    assert otel.counted("sekiban.command.retries", **{"sekiban.retry.reason": "conflict"}) == 1
    # opened, the interloper's deposit, the retried deposit
    assert otel.counted("sekiban.commands", **{"sekiban.command.outcome": "ok"}) == 3


async def test_refused_command_is_an_error_span_and_counted_by_error_type(otel: Telemetry) -> None:
    executor = SekibanExecutor(bank_domain(), conflict_retry=RetryPolicy.never())
    keys = await open_with_deposits(executor, 0)
    with pytest.raises(InsufficientFundsError):
        await executor.command(WithdrawMoney(account_id=keys.aggregate_id, amount=10))

    command = otel.spans("sekiban.command")[-1]
    assert command.status.status_code is StatusCode.ERROR
    assert command.events[-1].name == "exception"
    assert otel.children(command) == ["sekiban.load", "sekiban.decide"]
    attributes = {
        "sekiban.command.type": "WithdrawMoney",
        "sekiban.command.outcome": "error",
        "error.type": "InsufficientFundsError",
    }
    assert otel.counted("sekiban.commands", **attributes) == 1
    assert otel.counted("sekiban.commands", **{"sekiban.command.outcome": "ok"}) == 1


async def test_loads_count_snapshot_hits_misses_and_replay_lengths(otel: Telemetry) -> None:
    executor = SekibanExecutor(
        bank_domain(), snapshot_store=InMemorySnapshotStore(), snapshot_config=snapshot_every(4)
    )
    keys = await open_with_deposits(executor, 5)  # snapshot at 4, version 6
    result = await executor.load(AccountProjector, keys)
    assert result.statistics.from_snapshot

    load = otel.spans("sekiban.load")[-1]
    assert load.parent is None
    assert load.attributes is not None
    assert load.attributes["sekiban.events.replayed"] == 2
    hits = {"sekiban.snapshot.result": "hit"}
    misses = {"sekiban.snapshot.result": "miss"}
    # loads 1-4 replay 0..3 events with no snapshot; 5, 6 and the load use the one at 4
    assert otel.counted("sekiban.snapshot.loads", **misses) == 4
    assert otel.counted("sekiban.snapshot.loads", **hits) == 3
    replayed = otel.recorded("sekiban.load.events_replayed", **{"sekiban.snapshot.used": True})
    assert replayed == (3, 0 + 1 + 2)


async def test_rejected_snapshot_is_counted_by_reason(otel: Telemetry) -> None:
    snapshots = InMemorySnapshotStore()
    executor = SekibanExecutor(
        bank_domain(), snapshot_store=snapshots, snapshot_config=snapshot_every(2)
    )
    keys = await open_with_deposits(executor, 1)
    # The same snapshots read by a newer projector version: discarded and replayed.
    bumped = bank_domain()
    projector = bumped.projector(AccountProjector)
    type(projector).version = "2"
    try:
        await SekibanExecutor(bumped, executor.event_store, snapshot_store=snapshots).load(
            AccountProjector, keys
        )
    finally:
        type(projector).version = AccountProjector.version = "1"
    load = otel.spans("sekiban.load")[-1]
    assert load.attributes is not None
    assert load.attributes["sekiban.snapshot.rejection_reason"] == "projector-version"
    rejected = {"sekiban.snapshot.result": "rejected"}
    assert (
        otel.counted(
            "sekiban.snapshot.loads",
            **rejected,
            **{"sekiban.snapshot.rejection_reason": "projector-version"},
        )
        == 1
    )


async def test_query_span_wraps_projection_catch_up_and_lag_is_recorded(otel: Telemetry) -> None:
    executor = SekibanExecutor(bank_domain())
    await open_with_deposits(executor, 2)
    await executor.query(ActiveAccountsQuery())
    await executor.command(OpenAccount(owner="bob"))
    await executor.query(ActiveAccountsQuery())

    first, _ = otel.spans("sekiban.query")
    assert first.attributes is not None
    assert first.attributes["sekiban.query.type"] == "ActiveAccountsQuery"
    assert first.attributes["sekiban.projector.name"] == "account-list"
    assert otel.children(first) == ["sekiban.projection.catch_up"]
    first_catch_up, second_catch_up = otel.spans("sekiban.projection.catch_up")
    assert first_catch_up.attributes is not None and second_catch_up.attributes is not None
    assert first_catch_up.attributes["sekiban.events.applied"] == 3
    assert second_catch_up.attributes["sekiban.events.applied"] == 1
    lag = otel.recorded("sekiban.projection.lag", **{"sekiban.projector.name": "account-list"})
    assert lag == (2, 4)


async def test_actor_harness_nests_the_actor_span_under_the_client_call(otel: Telemetry) -> None:
    harness = ActorHarness(bank_domain(), snapshot_config=snapshot_every(100))
    keys = await open_with_deposits(harness, 1)
    otel.exporter.clear()
    await harness.command(DepositMoney(account_id=keys.aggregate_id, amount=1), command_id="c-9")

    command = otel.span("sekiban.command")
    assert otel.children(command) == ["sekiban.dapr.invoke"]
    invoke = otel.span("sekiban.dapr.invoke")
    assert invoke.kind is SpanKind.CLIENT
    assert invoke.attributes is not None
    assert invoke.attributes["sekiban.dapr.method"] == "ExecuteCommand"
    assert otel.children(invoke) == ["sekiban.actor.ExecuteCommand"]
    actor = otel.span("sekiban.actor.ExecuteCommand")
    assert actor.kind is SpanKind.SERVER
    assert actor.attributes is not None
    assert actor.attributes["sekiban.events.appended"] == 1
    # The actor is warm: no load, just decide and append.
    assert otel.children(actor) == ["sekiban.decide", "sekiban.append"]
    assert {s.context.trace_id for s in otel.spans() if s.context} == {
        command.context.trace_id  # type: ignore[union-attr]
    }


async def test_actor_refusal_is_an_error_on_the_actor_span(otel: Telemetry) -> None:
    harness = ActorHarness(bank_domain())
    keys = await open_with_deposits(harness, 0)
    with pytest.raises(Exception, match="InsufficientFundsError"):
        await harness.command(WithdrawMoney(account_id=keys.aggregate_id, amount=5))
    actor = otel.spans("sekiban.actor.ExecuteCommand")[-1]
    assert actor.status.status_code is StatusCode.ERROR
    assert otel.spans("sekiban.command")[-1].status.status_code is StatusCode.ERROR


async def test_actor_activation_load_and_load_method_are_spans_of_the_call(
    otel: Telemetry,
) -> None:
    harness = ActorHarness(bank_domain())
    keys = await open_with_deposits(harness, 2)
    await harness.fire_timers()
    await harness.fire_timers()  # quiet for a tick: the flush timer snapshots version 3
    await harness.deactivate(AccountProjector, keys)
    otel.exporter.clear()
    await harness.load(AccountProjector, keys)
    # The SDK activates the actor before it dispatches the method.
    invoke = otel.span("sekiban.dapr.invoke")
    assert otel.children(invoke) == ["sekiban.load", "sekiban.actor.LoadAggregate"]
    # The activation starts from that snapshot and replays nothing.
    load = otel.span("sekiban.load").attributes
    assert load is not None and load["sekiban.snapshot.used"] is True
    actor = otel.span("sekiban.actor.LoadAggregate")
    assert otel.children(actor) == ["sekiban.catch_up"]


async def test_middleware_makes_the_incoming_traceparent_the_parent(otel: Telemetry) -> None:
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    seen: list[object] = []

    async def app(scope: object, receive: object, send: object) -> None:
        from opentelemetry import trace

        seen.append(trace.get_current_span().get_span_context())

    headers = [(b"traceparent", f"00-{trace_id}-{parent_id}-01".encode())]
    await TraceContextMiddleware(app)({"type": "http", "headers": headers}, None, None)  # type: ignore[arg-type]
    (context,) = seen
    assert f"{context.trace_id:032x}" == trace_id  # type: ignore[attr-defined]
    assert f"{context.span_id:016x}" == parent_id  # type: ignore[attr-defined]


RUN_A_COMMAND = textwrap.dedent(
    """
    import asyncio, sys
    {prelude}
    from examples.bank import OpenAccount, bank_domain
    from sekiban import SekibanExecutor, telemetry

    async def main():
        response = await SekibanExecutor(bank_domain()).command(OpenAccount(owner="ann"))
        print(response.version, telemetry.ENABLED, telemetry.enabled())

    asyncio.run(main())
    """
)


@pytest.mark.parametrize(
    ("prelude", "expected"),
    [
        ("sys.modules['opentelemetry'] = None  # as if not installed", "1 False False"),
        ("", "1 True False"),
    ],
    ids=["api-not-installed", "api-without-sdk"],
)
def test_commands_run_without_the_api_or_without_a_provider(prelude: str, expected: str) -> None:
    code = RUN_A_COMMAND.format(prelude=prelude)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    )
    assert result.stdout.strip() == expected


def test_the_fast_provider_check_reads_what_the_public_getters_return() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import _internal

    # The session set both providers: the globals telemetry reads are those providers.
    assert telemetry._FAST_OFF
    assert trace._TRACER_PROVIDER is trace.get_tracer_provider()
    assert _internal._METER_PROVIDER is metrics.get_meter_provider()
    assert telemetry.enabled()
