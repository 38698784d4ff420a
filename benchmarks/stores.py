"""Event store throughput: sekiban against the `eventsourcing` package, same engine, same run.

    python -m benchmarks.stores [--quick] [--stores sqlite,sqlite-full,postgres] [--json]

Workloads, each on a bank account (an "opened" event, then deposits of one int):
appends of 1 and of 10 events per command, spread over many aggregates or into one
long stream, and the replay of a 10,000-event stream into an aggregate.

Two levels are compared:
- store: sekiban `decide`s the command's event envelopes, appends them as a
  `Serializer.to_stored` batch with `EventStore.append` and `projector.fold`s them into
  an aggregate held in memory (the repository's work without load and snapshot); replay is
  `EventReplayOptimizer.load` (read_stream, `Serializer.to_event`, fold). eventsourcing
  triggers the events on an aggregate held in memory and `Application.save`s it; replay
  is `repository.get`.
- executor: `SekibanExecutor.command` end to end (load, decide, append, snapshot) against
  an eventsourcing application command (`repository.get`, trigger, `save`). Both snapshot
  every 100 events during appends; neither has snapshots during the replay workload.

Every repetition uses a fresh database (a new SQLite file or PostgreSQL schema), runs a
warm-up that is not timed, then times the workload; the median is reported. "sqlite"
runs both frameworks with WAL and synchronous=NORMAL (sekiban's setting), "sqlite-full"
with WAL and synchronous=FULL (eventsourcing's default); the values are read back from
each connection and recorded. Full runs write `benchmarks/results/stores.{md,json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import eventsourcing.application as es
import eventsourcing.domain as es_domain
from pydantic import Field

from examples.bank import (
    AccountProjector,
    ActiveAccount,
    MoneyDeposited,
    OpenAccount,
    bank_domain,
)
from sekiban import (
    Aggregate,
    AggregatePayload,
    Command,
    CommandContext,
    EventMetadata,
    EventPayload,
    PartitionKeys,
    SekibanExecutor,
    Serializer,
)
from sekiban.core.command import decide
from sekiban.executor import utc_now
from sekiban.snapshot import EventReplayOptimizer, SnapshotConfiguration
from sekiban.stores import EventStore, SqliteEventStore

RESULTS = Path(__file__).parent / "results"
SNAPSHOT_EVERY = 100
FILL_CHUNK = 1000


# --- the two domains --------------------------------------------------------------


class DepositMany(Command):
    """`count` deposits in one command (the bank's DepositMoney makes one)."""

    projector = AccountProjector
    required_payload = (ActiveAccount,)

    account_id: uuid.UUID
    amount: int = Field(gt=0)
    count: int = Field(default=1, ge=1)

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.account_id, AccountProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        return [MoneyDeposited(amount=self.amount)] * self.count


DOMAIN = bank_domain().register(DepositMany)


class Account(es_domain.Aggregate):
    """The eventsourcing twin of the bank account."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0
        self.transactions = 0

    @es_domain.event("Deposited")
    def deposit(self, amount: int) -> None:
        self.balance += amount
        self.transactions += 1


class Bank(es.Application[uuid.UUID]):
    snapshotting_intervals = {Account: SNAPSHOT_EVERY}


# --- what is measured: one subject per framework and level ------------------------


class Subject(Protocol):
    async def open_account(self) -> Any: ...
    async def deposit(self, account: Any, count: int) -> None: ...
    async def replay(self, account: Any) -> int: ...


class SekibanStoreLevel:
    """What the repository does below the executor: `decide` the envelopes, append them as a
    `Serializer.to_stored` batch, fold them into the aggregate held in memory. Replay is
    `EventReplayOptimizer.load` (read_stream, `Serializer.to_event`, fold)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.serializer = Serializer(DOMAIN)
        self.projector = DOMAIN.projector(AccountProjector)
        self.optimizer = EventReplayOptimizer(store, self.serializer)
        self.metadata = EventMetadata(correlation_id=str(uuid.uuid4()))
        self.aggregates: dict[PartitionKeys, Aggregate[AggregatePayload]] = {}

    async def open_account(self) -> PartitionKeys:
        command = OpenAccount(owner="bench")
        keys = command.partition_keys()
        self.aggregates[keys] = self.projector.empty_aggregate(keys)
        await self._commit(keys, command)
        return keys

    async def deposit(self, account: PartitionKeys, count: int) -> None:
        command = DepositMany(account_id=account.aggregate_id, amount=1, count=count)
        await self._commit(account, command)

    async def _commit(self, keys: PartitionKeys, command: Command) -> None:
        aggregate = self.aggregates[keys]
        events = await decide(command, aggregate, self.metadata, utc_now)
        await self.store.append([self.serializer.to_stored(e) for e in events], aggregate.version)
        self.aggregates[keys] = self.projector.fold(aggregate, events)

    async def replay(self, account: PartitionKeys) -> int:
        return (await self.optimizer.load(self.projector, account)).aggregate.version


class SekibanExecutorLevel:
    """`SekibanExecutor.command` / `load_aggregate`, end to end."""

    def __init__(self, store: EventStore, snapshots: bool) -> None:
        snapshot_store = store.snapshot_store() if snapshots else None  # type: ignore[attr-defined]
        config = SnapshotConfiguration(strategy="count", count_threshold=SNAPSHOT_EVERY)
        self.executor = SekibanExecutor(
            DOMAIN, store, snapshot_store=snapshot_store, snapshot_config=config
        )

    async def open_account(self) -> uuid.UUID:
        command = OpenAccount(owner="bench")
        await self.executor.command(command)
        return command.account_id

    async def deposit(self, account: uuid.UUID, count: int) -> None:
        await self.executor.command(DepositMany(account_id=account, amount=1, count=count))

    async def replay(self, account: uuid.UUID) -> int:
        keys = PartitionKeys.existing(account, AccountProjector.name)
        return (await self.executor.load_aggregate(AccountProjector, keys)).version


class EventsourcingLevel:
    """`Application.save` of aggregates held in memory (store level) or an application
    command that gets the aggregate from the repository first (executor level)."""

    def __init__(self, app: Bank, *, cached: bool) -> None:
        self.app = app
        self.accounts: dict[uuid.UUID, Account] | None = {} if cached else None

    async def open_account(self) -> uuid.UUID:
        account = Account("bench")
        self.app.save(account)
        if self.accounts is not None:
            self.accounts[account.id] = account
        return account.id

    async def deposit(self, account_id: uuid.UUID, count: int) -> None:
        if self.accounts is not None:
            account = self.accounts[account_id]
        else:
            account = self.app.repository.get(account_id)
        for _ in range(count):
            account.deposit(1)
        self.app.save(account)

    async def replay(self, account_id: uuid.UUID) -> int:
        return self.app.repository.get(account_id).version


# --- database engines: a fresh database for each run ------------------------------


class Engine(Protocol):
    name: str
    settings: dict[str, str]

    def sekiban_store(self) -> AbstractAsyncContextManager[EventStore]: ...
    def eventsourcing_app(self, snapshots: bool) -> AbstractAsyncContextManager[Bank]: ...


class SqliteEngine:
    """A new database file per run, both frameworks at the same `synchronous` level."""

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
    async def sekiban_store(self) -> AsyncIterator[EventStore]:
        store = await SqliteEventStore.open(self._fresh_path())

        def configure(connection: sqlite3.Connection) -> None:
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            self._record("sekiban", connection)

        # The store has no durability option: the connection its statements run on is set
        # here (its lock-waiting worker connection is used only when another writer holds
        # the lock, which never happens in these single-writer runs).
        await store._db.run(configure)
        try:
            yield store
        finally:
            await store.close()

    @asynccontextmanager
    async def eventsourcing_app(self, snapshots: bool) -> AsyncIterator[Bank]:
        app = _bank(
            snapshots,
            PERSISTENCE_MODULE="eventsourcing.sqlite",
            SQLITE_DBNAME=self._fresh_path(),
            CREATE_TABLE="no",
        )
        # eventsourcing has no synchronous option either: every connection its pool
        # opens gets the level, then the tables are made.
        pool = app.factory.datastore.pool  # type: ignore[attr-defined]
        create = pool._create_connection

        def create_connection() -> Any:
            connection = create()
            connection._sqlite_conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._record("eventsourcing", connection._sqlite_conn)
            return connection

        pool._create_connection = create_connection
        for recorder in (app.recorder, app.snapshots and app.snapshots.recorder):
            if recorder:
                recorder.create_table()
        try:
            yield app
        finally:
            app.close()


class PostgresEngine:
    """A new schema per run on one server; both frameworks use its default settings."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.name, self.dsn, self._psycopg = "postgres", dsn, psycopg
        with psycopg.connect(dsn) as connection:
            self.settings = {
                name: str(connection.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            }

    @contextmanager
    def _fresh_schema(self) -> Iterator[str]:
        schema = f"bench_{uuid.uuid4().hex[:16]}"
        with self._psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            with self._psycopg.connect(self.dsn, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema} CASCADE")

    @asynccontextmanager
    async def sekiban_store(self) -> AsyncIterator[EventStore]:
        from sekiban.stores.postgres import PostgresEventStore

        with self._fresh_schema() as schema:
            store = await PostgresEventStore.connect(self.dsn, schema=schema)
            try:
                yield store
            finally:
                await store.close()

    @asynccontextmanager
    async def eventsourcing_app(self, snapshots: bool) -> AsyncIterator[Bank]:
        info = self._psycopg.conninfo.conninfo_to_dict(self.dsn)
        with self._fresh_schema() as schema:
            app = _bank(
                snapshots,
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


def _bank(snapshots: bool, **env: str) -> Bank:
    return Bank(env={**env, "IS_SNAPSHOTTING_ENABLED": "y" if snapshots else "n"})


# --- workloads and timing ---------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    events_per_command: int = 1
    accounts: int = 1
    commands: int = 0  # timed commands, round robin over the accounts; 0: replay
    replay_events: int = 0

    @property
    def is_replay(self) -> bool:
        return self.replay_events > 0


def workloads(events: int, accounts: int, replay_events: int) -> list[Workload]:
    appends = [
        Workload(f"append {k}/cmd, {_streams(n)}", k, n, events // k)
        for n in (accounts, 1)
        for k in (1, 10)
    ]
    replay = Workload(f"replay {replay_events:,}-event stream", replay_events=replay_events)
    return [*appends, replay]


def _streams(accounts: int) -> str:
    return f"{accounts} aggregates" if accounts > 1 else "one stream"


LEVELS = ("store", "executor")
FRAMEWORKS = ("sekiban", "eventsourcing")


@asynccontextmanager
async def subject(
    engine: Engine, framework: str, level: str, snapshots: bool
) -> AsyncIterator[Subject]:
    if framework == "sekiban":
        async with engine.sekiban_store() as store:
            yield (
                SekibanStoreLevel(store)
                if level == "store"
                else SekibanExecutorLevel(store, snapshots)
            )
    else:
        async with engine.eventsourcing_app(snapshots and level == "executor") as app:
            yield EventsourcingLevel(app, cached=level == "store")


async def run_once(engine: Engine, framework: str, level: str, workload: Workload) -> float:
    """Seconds the timed part of `workload` took, on a fresh database, after a warm-up."""
    async with subject(engine, framework, level, snapshots=not workload.is_replay) as s:
        if workload.is_replay:
            account = await s.open_account()
            for start in range(1, workload.replay_events, FILL_CHUNK):
                await s.deposit(account, min(FILL_CHUNK, workload.replay_events - start))

            async def timed() -> None:
                version = await s.replay(account)
                assert version == workload.replay_events, version

            await timed()  # warm-up
        else:
            accounts = [await s.open_account() for _ in range(workload.accounts)]
            k = workload.events_per_command

            async def commands(n: int) -> None:
                for i in range(n):
                    await s.deposit(accounts[i % len(accounts)], k)

            await commands(max(1, workload.commands // 10))  # warm-up

            async def timed() -> None:
                await commands(workload.commands)

        gc.collect()
        started = time.perf_counter()
        await timed()
        return time.perf_counter() - started


@dataclass
class Result:
    engine: str
    workload: str
    level: str
    framework: str
    events: int
    seconds: list[float] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / statistics.median(self.seconds)


async def run(engines: list[Engine], plan: list[Workload], repeat: int) -> list[Result]:
    results = []
    for engine in engines:
        for workload in plan:
            events = workload.replay_events or workload.commands * workload.events_per_command
            cells = [
                Result(engine.name, workload.name, level, framework, events)
                for level in LEVELS
                for framework in FRAMEWORKS
            ]
            # Repetitions interleave the subjects so drift hits all of them alike.
            for _ in range(repeat):
                for cell in cells:
                    cell.seconds.append(
                        await run_once(engine, cell.framework, cell.level, workload)
                    )
            for cell in cells:
                print(
                    f"  {engine.name:11} {workload.name:32} {cell.level:8} {cell.framework:13} "
                    f"{cell.events_per_second:>10,.0f} events/s",
                    file=sys.stderr,
                )
            results.extend(cells)
    return results


# --- reporting --------------------------------------------------------------------


def ratios(results: list[Result]) -> dict[tuple[str, str, str], float]:
    """sekiban / eventsourcing throughput per (engine, workload, level)."""
    by_key = {(r.engine, r.workload, r.level, r.framework): r.events_per_second for r in results}
    return {
        key[:3]: by_key[key] / by_key[(*key[:3], "eventsourcing")]
        for key in by_key
        if key[3] == "sekiban"
    }


def environment(argv: list[str]) -> dict[str, Any]:
    """The machine and the code under test, taken when the run starts."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    packages = ("sekiban", "eventsourcing", "pydantic", "asyncpg", "psycopg")
    return {
        "command": " ".join(["python -m benchmarks.stores", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": _git("rev-parse", "--short", "HEAD"),
        # Uncommitted changes to the code under test, if any: the figures measure those.
        "uncommitted": _git("status", "--porcelain", "--", "src", "examples").splitlines(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": {"before": _load_average()},
        "packages": {name: _version(name) for name in packages},
    }


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def as_json(env: dict[str, Any], results: list[Result], repeat: int) -> str:
    rows = [{**asdict(r), "events_per_second": round(r.events_per_second)} for r in results]
    table = [
        {"engine": e, "workload": w, "level": lvl, "sekiban_over_eventsourcing": round(x, 2)}
        for (e, w, lvl), x in ratios(results).items()
    ]
    document = {"environment": env, "repeat": repeat, "results": rows, "ratios": table}
    return json.dumps(document, indent=2)


def as_markdown(env: dict[str, Any], results: list[Result], repeat: int) -> str:
    eps = {(r.engine, r.workload, r.level, r.framework): r.events_per_second for r in results}
    ratio = ratios(results)
    lines = [
        "# Event store throughput: sekiban vs eventsourcing",
        "",
        f"`{env['command']}` at {env['date']} (git `{env['git']}`"
        + (f", uncommitted: {'; '.join(env['uncommitted'])}" if env["uncommitted"] else "")
        + f"), median of {repeat} "
        "runs, each on a fresh database after an untimed warm-up. Figures are events/s; "
        "ratio = sekiban / eventsourcing (target: >= 2).",
        "",
        f"- machine: {env['nproc']} CPUs, {env['cpu']}, {env['platform']}; load average "
        f"{env['load_average']['before']} before, {env['load_average']['after']} after",
        f"- Python {env['python']}, SQLite {env['sqlite']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
    ]
    for name, settings in env["engines"].items():
        shown = "; ".join(f"{k}: {v}" for k, v in settings.items())
        lines.append(f"- {name}: {shown}")
    lines += [
        "",
        "Store level: sekiban `decide`, `EventStore.append` of the `Serializer.to_stored` batch "
        "and `projector.fold` (aggregate kept in memory), replay = `EventReplayOptimizer.load`; "
        "eventsourcing `Application.save` of an aggregate kept in memory, replay = "
        "`repository.get`. Executor level: `SekibanExecutor.command` vs an eventsourcing "
        f"application command (`repository.get`, trigger, `save`), both snapshotting every "
        f"{SNAPSHOT_EVERY} events; replay = `load_aggregate` vs `repository.get`, no snapshots.",
        "",
        "Where the time goes (profiles, and what bounds the SQLite ratios): "
        "[stores-profile.md](stores-profile.md).",
        "",
    ]
    for engine in dict.fromkeys(r.engine for r in results):
        lines += [
            f"## {engine}",
            "",
            "| workload | sekiban store | eventsourcing | ratio "
            "| sekiban executor | eventsourcing app | ratio |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for workload in dict.fromkeys(r.workload for r in results if r.engine == engine):
            cells = [workload]
            for level in LEVELS:
                cells += [
                    f"{eps[(engine, workload, level, 'sekiban')]:,.0f}",
                    f"{eps[(engine, workload, level, 'eventsourcing')]:,.0f}",
                    f"{ratio[(engine, workload, level)]:.2f}x",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        runs = [r for r in results if r.engine == engine]
        slowest = max(runs, key=_spread)
        lines += [
            "",
            f"Slowest/fastest repetition: median {statistics.median(map(_spread, runs)):.2f}, "
            f"worst {_spread(slowest):.2f} ({slowest.workload}, {slowest.level}, "
            f"{slowest.framework}).",
            "",
        ]
    return "\n".join(lines)


def _spread(result: Result) -> float:
    return max(result.seconds) / min(result.seconds)


# --- command line -----------------------------------------------------------------


def engines_for(names: list[str], directory: Path) -> list[Engine]:
    engines: list[Engine] = []
    for name in names:
        if name == "sqlite":
            engines.append(SqliteEngine(name, directory, "NORMAL"))
        elif name == "sqlite-full":
            engines.append(SqliteEngine(name, directory, "FULL"))
        elif name == "postgres":
            skip = _postgres_missing()
            if skip:
                print(f"skipping postgres: {skip}", file=sys.stderr)
            else:
                engines.append(PostgresEngine(os.environ["SEKIBAN_POSTGRES_DSN"]))
        else:
            raise SystemExit(f"unknown store {name!r}: choose sqlite, sqlite-full, postgres")
    return engines


def _postgres_missing() -> str | None:
    if not os.environ.get("SEKIBAN_POSTGRES_DSN"):
        return 'SEKIBAN_POSTGRES_DSN is not set (run: eval "$(scripts/services.sh env)")'
    for module in ("sekiban.stores.postgres", "psycopg", "eventsourcing.postgres"):
        try:
            __import__(module)
        except ImportError as error:
            return f"{module} cannot be imported ({error})"
    return None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stores", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, results not saved")
    parser.add_argument("--stores", default="sqlite,sqlite-full,postgres")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    env = environment(argv)
    repeat = args.repeat or (1 if args.quick else 5)
    plan = workloads(1_000, 100, 10_000) if args.quick else workloads(5_000, 500, 10_000)

    with tempfile.TemporaryDirectory(prefix="sekiban-bench-") as directory:
        engines = engines_for(args.stores.split(","), Path(directory))
        results = asyncio.run(run(engines, plan, repeat))
    env["load_average"]["after"] = _load_average()
    env["engines"] = {engine.name: engine.settings for engine in engines}
    markdown, document = as_markdown(env, results, repeat), as_json(env, results, repeat)
    print(document if args.json else markdown)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "stores.md").write_text(markdown)
        (RESULTS / "stores.json").write_text(document + "\n")


if __name__ == "__main__":
    main()
