"""Database engines for the benchmarks: fresh, empty storage for each run.

An engine gives sekiban an event store and its snapshot store, and `eventsourcing` an
application, both on a new database (an SQLite file, a PostgreSQL schema, Cosmos DB
containers, process memory) so no run sees another's data. Engines that need a server
read its address from the environment (`scripts/services.sh env` prints it);
`engines_for` skips, with the reason, those whose server or driver is missing.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from benchmarks.domains import Bank, SnapshottingBank
from sekiban.stores import EventStore, InMemoryEventStore, InMemorySnapshotStore, SnapshotStore

ENGINE_NAMES = ("memory", "sqlite", "sqlite-full", "postgres", "cosmos")


@dataclass(frozen=True)
class Stores:
    """A sekiban event store and the snapshot store beside it."""

    events: EventStore
    snapshots: SnapshotStore


class Engine(Protocol):
    """Where a benchmark runs. `settings` records how the database was configured;
    `eventsourcing` is False where the `eventsourcing` package has no persistence
    module (Cosmos DB), so only sekiban runs there."""

    name: str
    settings: dict[str, str]
    eventsourcing: bool

    def sekiban_stores(self) -> AbstractAsyncContextManager[Stores]: ...
    def eventsourcing_app(
        self, snapshots: bool, *, automatic: bool = True
    ) -> AbstractAsyncContextManager[Bank]:
        """An application on fresh storage; with `snapshots` it has a snapshot store
        and, if `automatic`, snapshots every `SNAPSHOT_EVERY` events by itself."""
        ...


def new_bank(snapshots: bool, automatic: bool, **env: str) -> Bank:
    """A `Bank` (`SnapshottingBank` if `automatic`) with its snapshot store on or off."""
    app_class = SnapshottingBank if automatic else Bank
    return app_class(env={**env, "IS_SNAPSHOTTING_ENABLED": "y" if snapshots else "n"})


class MemoryEngine:
    """Process memory: sekiban's in-memory stores, eventsourcing's POPO recorders."""

    name = "memory"
    eventsourcing = True

    def __init__(self) -> None:
        self.settings: dict[str, str] = {}

    @asynccontextmanager
    async def sekiban_stores(self) -> AsyncIterator[Stores]:
        yield Stores(InMemoryEventStore(), InMemorySnapshotStore())

    @asynccontextmanager
    async def eventsourcing_app(
        self, snapshots: bool, *, automatic: bool = True
    ) -> AsyncIterator[Bank]:
        app = new_bank(snapshots, automatic, PERSISTENCE_MODULE="eventsourcing.popo")
        try:
            yield app
        finally:
            app.close()


class SqliteEngine:
    """A new database file per run, both frameworks at the same `synchronous` level
    (WAL mode for both)."""

    eventsourcing = True

    def __init__(self, name: str, directory: Path, synchronous: str) -> None:
        self.name, self.directory, self.synchronous = name, directory, synchronous
        self.settings: dict[str, str] = {}

    def _fresh_path(self) -> str:
        return str(self.directory / f"{uuid.uuid4().hex}.db")

    def _record(self, who: str, connection: sqlite3.Connection) -> None:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        (level,) = connection.execute("PRAGMA synchronous").fetchone()
        self.settings[who] = f"journal_mode={mode}, synchronous={level}"

    @asynccontextmanager
    async def sekiban_stores(self) -> AsyncIterator[Stores]:
        from sekiban.stores.sqlite import SqliteEventStore

        store = await SqliteEventStore.open(self._fresh_path(), synchronous=self.synchronous)
        await store._db.run(lambda connection: self._record("sekiban", connection))
        try:
            yield Stores(store, store.snapshot_store())
        finally:
            await store.close()

    @asynccontextmanager
    async def eventsourcing_app(
        self, snapshots: bool, *, automatic: bool = True
    ) -> AsyncIterator[Bank]:
        app = new_bank(
            snapshots,
            automatic,
            PERSISTENCE_MODULE="eventsourcing.sqlite",
            SQLITE_DBNAME=self._fresh_path(),
            CREATE_TABLE="no",
        )
        # eventsourcing has no synchronous option either: every connection its pool
        # opens gets the level, then the tables are made.
        pool: Any = app.factory.datastore.pool  # type: ignore[attr-defined]
        create = pool._create_connection

        def create_connection() -> Any:
            connection = create()
            connection._sqlite_conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._record("eventsourcing", connection._sqlite_conn)
            return connection

        pool._create_connection = create_connection
        recorders: list[Any] = [app.recorder, app.snapshots and app.snapshots.recorder]
        for recorder in recorders:
            if recorder:
                recorder.create_table()
        try:
            yield app
        finally:
            app.close()


class PostgresEngine:
    """A new schema per run on one server; both frameworks use its default settings."""

    name = "postgres"
    eventsourcing = True

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.dsn = dsn
        with psycopg.connect(dsn) as connection:
            self.settings = {
                name: str(_first(connection.execute(f"SHOW {name}").fetchone()))
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }

    @contextmanager
    def _fresh_schema(self) -> Iterator[str]:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            with psycopg.connect(self.dsn, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema} CASCADE")

    @asynccontextmanager
    async def sekiban_stores(self) -> AsyncIterator[Stores]:
        from sekiban.stores.postgres import PostgresEventStore

        with self._fresh_schema() as schema:
            store = await PostgresEventStore.open(self.dsn, schema=schema)
            try:
                yield Stores(store, store.snapshot_store())
            finally:
                await store.close()

    @asynccontextmanager
    async def eventsourcing_app(
        self, snapshots: bool, *, automatic: bool = True
    ) -> AsyncIterator[Bank]:
        import psycopg

        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        with self._fresh_schema() as schema:
            app = new_bank(
                snapshots,
                automatic,
                PERSISTENCE_MODULE="eventsourcing.postgres",
                POSTGRES_DBNAME=str(info["dbname"]),
                POSTGRES_HOST=str(info.get("host", "localhost")),
                POSTGRES_PORT=str(info.get("port", "5432")),
                POSTGRES_USER=str(info["user"]),
                POSTGRES_PASSWORD=str(info.get("password", "")),
                POSTGRES_SCHEMA=schema,
            )
            try:
                yield app
            finally:
                app.close()


class CosmosEngine:
    """New containers per run on a Cosmos DB endpoint (the local server in development).

    sekiban only: `eventsourcing` has no Cosmos DB persistence. No safe window: the
    benchmarks read only single streams, never `read_all`.
    """

    name = "cosmos"
    eventsourcing = False

    def __init__(self) -> None:
        from sekiban.stores.cosmos.connection import settings_from_env

        self._settings = settings_from_env()
        self.settings = {"endpoint": self._settings["endpoint"]}

    @asynccontextmanager
    async def sekiban_stores(self) -> AsyncIterator[Stores]:
        from sekiban.stores.cosmos import CosmosEventStore

        store = await CosmosEventStore.open(
            endpoint=self._settings["endpoint"],
            key=self._settings["key"],
            database=self._settings.get("database", "sekiban-bench"),
            container_prefix=f"bench-{uuid.uuid4().hex[:12]}",
            safe_window=timedelta(0),
        )
        try:
            yield Stores(store, store.snapshot_store())
        finally:
            try:
                await store.drop()
            finally:
                await store.close()

    def eventsourcing_app(
        self, snapshots: bool, *, automatic: bool = True
    ) -> AbstractAsyncContextManager[Bank]:
        raise NotImplementedError("the eventsourcing package has no Cosmos DB persistence")


def _first(row: tuple[Any, ...] | None) -> Any:
    assert row is not None
    return row[0]


def engines_for(
    names: list[str], directory: Path, skipped: dict[str, str] | None = None
) -> list[Engine]:
    """The engines `names` asks for; those that cannot run here are left out and
    their reason put in `skipped`. Unknown names raise `ValueError`."""
    skipped = {} if skipped is None else skipped
    engines: list[Engine] = []
    for name in names:
        if name == "memory":
            engines.append(MemoryEngine())
        elif name == "sqlite":
            engines.append(SqliteEngine(name, directory, "NORMAL"))
        elif name == "sqlite-full":
            engines.append(SqliteEngine(name, directory, "FULL"))
        elif name == "postgres":
            reason = _postgres_missing()
            if reason:
                skipped[name] = reason
            else:
                engines.append(PostgresEngine(os.environ["SEKIBAN_POSTGRES_DSN"]))
        elif name == "cosmos":
            reason = _cosmos_missing()
            if reason:
                skipped[name] = reason
            else:
                engines.append(CosmosEngine())
        else:
            raise ValueError(f"unknown store {name!r}: choose from {', '.join(ENGINE_NAMES)}")
    return engines


def _postgres_missing() -> str | None:
    if not os.environ.get("SEKIBAN_POSTGRES_DSN"):
        return 'SEKIBAN_POSTGRES_DSN is not set (run: eval "$(scripts/services.sh env)")'
    return _unimportable("sekiban.stores.postgres", "psycopg", "eventsourcing.postgres")


def _cosmos_missing() -> str | None:
    if not (
        os.environ.get("SEKIBAN_COSMOS_CONNECTION_STRING")
        or (os.environ.get("SEKIBAN_COSMOS_ENDPOINT") and os.environ.get("SEKIBAN_COSMOS_KEY"))
    ):
        return "SEKIBAN_COSMOS_ENDPOINT / SEKIBAN_COSMOS_KEY are not set"
    return _unimportable("sekiban.stores.cosmos")


def _unimportable(*modules: str) -> str | None:
    for module in modules:
        try:
            __import__(module)
        except ImportError as error:
            return f"{module} cannot be imported ({error})"
    return None
