"""The bank domain served as Dapr aggregate actors.

    uvicorn examples.dapr_host:app --port 3000   # next to `daprd --app-port 3000 ...`

Events go to PostgreSQL when SEKIBAN_POSTGRES_DSN is set (schema
SEKIBAN_POSTGRES_SCHEMA, default "public"), else to the SQLite file SEKIBAN_SQLITE_PATH.
SEKIBAN_SNAPSHOT_STRATEGY, SEKIBAN_SNAPSHOT_COUNT and SEKIBAN_SNAPSHOT_INTERVAL_MS set
the snapshot configuration. SEKIBAN_SNAPSHOT_SIGNING_KEY (`key-id:secret`) signs
snapshots and refuses unsigned ones; SEKIBAN_SNAPSHOT_ACCEPTED_KEYS
(`key-id:secret,...`) lists the previous keys still accepted while rotating.
"""

from __future__ import annotations

import os
from datetime import timedelta

from examples.bank import bank_domain
from sekiban.dapr.app import create_actor_app
from sekiban.snapshot import SnapshotConfiguration, SnapshotSigning
from sekiban.stores import EventStore


async def open_event_store() -> EventStore:
    dsn = os.environ.get("SEKIBAN_POSTGRES_DSN")
    if dsn:
        from sekiban.stores.postgres import PostgresEventStore

        schema = os.environ.get("SEKIBAN_POSTGRES_SCHEMA", "public")
        return await PostgresEventStore.connect(dsn, schema=schema)
    from sekiban.stores.sqlite import SqliteEventStore

    return await SqliteEventStore.open(os.environ.get("SEKIBAN_SQLITE_PATH", "sekiban-dapr.db"))


def snapshot_signing() -> SnapshotSigning | None:
    key = os.environ.get("SEKIBAN_SNAPSHOT_SIGNING_KEY")
    if not key:
        return None
    return SnapshotSigning.from_settings(key, os.environ.get("SEKIBAN_SNAPSHOT_ACCEPTED_KEYS", ""))


app = create_actor_app(
    bank_domain(),
    open_event_store,
    snapshot_config=SnapshotConfiguration(
        strategy=os.environ.get("SEKIBAN_SNAPSHOT_STRATEGY", "count"),
        count_threshold=int(os.environ.get("SEKIBAN_SNAPSHOT_COUNT", "50")),
        time_interval_ms=int(os.environ.get("SEKIBAN_SNAPSHOT_INTERVAL_MS", "60000")),
        signing=snapshot_signing(),
    ),
    actor_idle_timeout=timedelta(seconds=int(os.environ.get("SEKIBAN_ACTOR_IDLE_SECONDS", "900"))),
)
