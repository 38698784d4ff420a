"""The committed component files (dapr/components/) load in a real daprd and serve.

The secret store reads dapr/secrets.json relative to daprd's working directory, as
under `dapr run -f .`; the state store takes its connection string from it. A command
through the sidecar, and the actor state table it leaves in PostgreSQL, prove both.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest
import yaml

from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban.stores import with_query
from sekiban.stores.postgres import PostgresEventStore
from sekiban.testing.sidecar import DaprCluster
from tests.conformance.backends import require_env
from tests.integration.dapr_support import dapr_binaries

pytestmark = pytest.mark.dapr

ROOT = Path(__file__).resolve().parents[2]


async def test_the_committed_components_serve_commands(tmp_path: Path) -> None:
    run_file = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    (app,) = run_file["apps"]
    # A project directory as a user has it: the component files as committed, and the
    # real secrets file beside them (here: this test's database schema).
    project = tmp_path / "project"
    resources = project / run_file["common"]["resourcesPath"]
    shutil.copytree(ROOT / run_file["common"]["resourcesPath"], resources)
    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    schema = f"runfile_{uuid.uuid4().hex[:10]}"
    store = await PostgresEventStore.open(dsn, schema=schema)
    secret = {"actorstate-connection-string": with_query(dsn, search_path=schema)}
    (project / "dapr" / "secrets.json").write_text(json.dumps(secret))
    env = {**app["env"], "SEKIBAN_STORE_URL": with_query(dsn, schema=schema)}
    try:
        with DaprCluster(
            project,
            app["command"][1],
            resources_path=resources,
            app_env=env,
            binaries=dapr_binaries(),
        ) as cluster:
            node = cluster.start_node(app["appID"])
            executor = DaprSekibanExecutor(
                bank_domain(), store, dapr_http_endpoint=node.http_endpoint
            )
            keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=7))
            aggregate = await executor.load_aggregate(AccountProjector, keys)
            assert aggregate.payload.balance == 7  # type: ignore[attr-defined]
        connection = await asyncpg.connect(dsn)
        try:
            tables = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
            )
        finally:
            await connection.close()
        assert "bank_actor_state" in {row["tablename"] for row in tables}
    finally:
        await store.drop_schema()
        await store.close()
