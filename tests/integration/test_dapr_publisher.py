"""Fan-out through Dapr pub/sub on the real runtime: a runner publishes events, a
subscribed app receives them (daprd's in-memory pub/sub component)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from sekiban import SekibanExecutor
from sekiban.core.serialization import StoredEvent
from sekiban.dapr import DaprEventPublisher
from sekiban.examples.bank import OpenAccount, bank_domain
from sekiban.reactions import ReactionRunner
from sekiban.testing.sidecar import DaprCluster
from tests.integration.dapr_support import dapr_binaries

pytestmark = pytest.mark.dapr

PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: events
spec:
  type: pubsub.in-memory
  version: v1
  metadata: []
"""


async def test_published_events_reach_a_subscriber_with_their_ids(tmp_path: Path) -> None:
    components = tmp_path / "components"
    components.mkdir()
    (components / "pubsub.yaml").write_text(PUBSUB)
    received = tmp_path / "received.jsonl"
    received.touch()
    with DaprCluster(
        tmp_path,
        "tests.integration.pubsub_host:app",
        resources_path=components,
        app_env={"RECEIVED_FILE": str(received)},
        binaries=dapr_binaries(),
    ) as cluster:
        node = cluster.start_node("listener")
        executor = SekibanExecutor(bank_domain())
        responses = [await executor.command(OpenAccount(owner=name)) for name in "abc"]
        events = {str(e.id): e for r in responses for e in r.events}
        publisher = DaprEventPublisher("events", "sekiban", dapr_http_endpoint=node.http_endpoint)
        runner = ReactionRunner(executor, publisher)
        assert await runner.run_until_idle() == len(events)

        deadline = time.monotonic() + 60
        while len(received.read_text().splitlines()) < len(events):
            if time.monotonic() > deadline:
                pytest.fail(f"received only {received.read_text()!r}")
            await asyncio.sleep(0.2)

    messages = [json.loads(line) for line in received.read_text().splitlines()]
    assert sorted(m["id"] for m in messages) == sorted(events)
    for message in messages:
        event = events[message["id"]]
        assert message["type"] == "AccountOpened"
        assert message["subject"] == str(event.partition_keys)
        stored = StoredEvent.from_dict(message["data"])
        assert executor.repository.serializer.to_event(stored) == event
