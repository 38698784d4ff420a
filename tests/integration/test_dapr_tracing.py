"""Trace context crosses the Dapr hop: daprd forwards `traceparent` to the actor host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.bank import OpenAccount, bank_domain
from sekiban.dapr.executor import DaprSekibanExecutor
from tests.conftest import Telemetry
from tests.integration.dapr_support import bank_cluster

pytestmark = pytest.mark.dapr


async def test_actor_host_spans_join_the_callers_trace_on_real_daprd(
    tmp_path: Path, otel: Telemetry
) -> None:
    spans_file = tmp_path / "host-spans.jsonl"
    async with bank_cluster(tmp_path, extra_env={"SEKIBAN_OTEL_FILE": str(spans_file)}) as bank:
        node = bank.cluster.start_node("bank")
        executor = DaprSekibanExecutor(
            bank_domain(), bank.store, dapr_http_endpoint=node.http_endpoint
        )
        await executor.command(OpenAccount(owner="ann"))
        invoke = otel.span("sekiban.dapr.invoke")
        assert invoke.context is not None
        trace_id = f"0x{invoke.context.trace_id:032x}"

        host_spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
        (actor,) = [s for s in host_spans if s["name"] == "sekiban.actor.ExecuteCommand"]
        assert actor["context"]["trace_id"] == trace_id
        assert actor["kind"] == "SpanKind.SERVER"
        # daprd without a tracing configuration forwards the header as it came: the
        # actor span's parent is the client span itself (with tracing on, daprd's own).
        assert actor["parent_id"] == f"0x{invoke.context.span_id:016x}"
        # Its decide and append spans are in the same trace, under the actor span.
        inside = {s["name"] for s in host_spans if s["parent_id"] == actor["context"]["span_id"]}
        assert {"sekiban.decide", "sekiban.append"} <= inside
