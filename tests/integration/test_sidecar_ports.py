"""Ports are free when the test harness picks them, but another program may bind one
before the process it was picked for: `DaprCluster.start_node` then starts the node
again on new ports instead of failing the test (two test runs can share a machine)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.bank import OpenAccount, bank_domain
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.testing import sidecar
from tests.integration.dapr_support import bank_cluster

pytestmark = pytest.mark.dapr


async def test_a_node_whose_port_was_taken_meanwhile_starts_on_other_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with bank_cluster(tmp_path) as bank:
        with socket.socket() as taken:  # another program's listener, bound first
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            real = sidecar.free_port

            def ports() -> Iterator[int]:
                yield busy  # the app's port, the first time
                while True:
                    yield real()

            chosen = ports()
            monkeypatch.setattr(sidecar, "free_port", lambda: next(chosen))
            node = bank.cluster.start_node("bank")
        assert node.app_port != busy
        executor = DaprSekibanExecutor(bank_domain(), dapr_http_endpoint=node.http_endpoint)
        response = await executor.command(OpenAccount(owner="ann"))
        assert response.version == 1
