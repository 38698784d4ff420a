"""Store URLs: one string names a store in Python, on the command line and in the
environment, and `open_store` opens it.

    memory://
    sqlite:///relative/events.db       sqlite:////absolute/events.db    sqlite:///:memory:
    postgresql://user:password@host:5432/db?schema=app&table_prefix=sekiban
    cosmos://host:8081/database?container_prefix=sekiban   (cosmos+http:// without TLS)

SQLite paths follow SQLAlchemy: what follows `sqlite:///` is the path, so a fourth
slash makes it absolute. A PostgreSQL URL is the asyncpg DSN itself: query parameters
sekiban does not know (`sslmode`, ...) go to asyncpg unchanged. A Cosmos DB key never
goes in the URL (URLs end up in logs and process lists): pass `key=` or set
SEKIBAN_COSMOS_KEY. Durations in a query are seconds, and say so in their name
(`busy_timeout_seconds`, `safe_window_seconds`). Keyword options given to `open_store`
win over the query.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sekiban.errors import ConfigurationError
from sekiban.stores.memory import InMemoryEventStore, InMemorySnapshotStore
from sekiban.stores.protocols import EventStore, SnapshotStore

if TYPE_CHECKING:
    from sekiban.projections.store import ProjectionStore

SCHEMES = ("memory", "sqlite", "postgresql", "postgres", "cosmos", "cosmos+http")
COSMOS_KEY_VARIABLE = "SEKIBAN_COSMOS_KEY"


class Stores(NamedTuple):
    """An open event store and the snapshot store beside it (sharing its connection).

    `async with` closes both on exit; so does `close()`. Unpacks as
    `events, snapshots = stores`; `stores.projections` is the projection store beside
    them.
    """

    events: EventStore
    snapshots: SnapshotStore

    @property
    def projections(self) -> ProjectionStore:
        """The projection store beside the event store, sharing its connection (for
        `SekibanExecutor(projection_store=...)`); closing the stores closes it too.

        Raises `ConfigurationError` for an event store that has none.
        """
        projection_store = getattr(self.events, "projection_store", None)
        if projection_store is None:
            raise ConfigurationError(
                f"{type(self.events).__name__} has no projection_store(): pass a "
                "ProjectionStore to the executor yourself"
            )
        store: ProjectionStore = projection_store()
        return store

    async def close(self) -> None:
        """Close the snapshot store, then the event store (which owns the connection)."""
        try:
            await self.snapshots.close()
        finally:
            await self.events.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@dataclass(frozen=True, slots=True)
class StoreUrl:
    """A parsed store URL: which store (`kind`: "memory", "sqlite", "postgresql" or
    "cosmos") and the keyword options its `open` classmethod takes (`target` is the
    positional part: the SQLite path, the PostgreSQL DSN or the Cosmos endpoint)."""

    kind: str
    target: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


def parse_store_url(url: str) -> StoreUrl:
    """Parse `url` (see the module docstring); nothing is opened.

    Raises `ConfigurationError` naming the problem for an unknown scheme, a malformed
    URL, an unknown or invalid query parameter, or a key in a Cosmos DB URL. Messages
    never repeat a password.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"a store URL looks like 'scheme://...' with scheme one of {_schemes()}, "
            f"got {redact(url) if isinstance(url, str) else url!r}"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as error:
        raise ConfigurationError(f"malformed store URL {redact(url)}: {error}") from None
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if len(query) != len(parse_qsl(parts.query, keep_blank_values=True)):
        raise ConfigurationError(f"store URL {redact(url)} repeats a query parameter")
    if scheme == "memory":
        if parts.netloc or parts.path.strip("/") or query:
            raise ConfigurationError(f"memory:// takes no host, path or query, got {redact(url)}")
        return StoreUrl("memory")
    if scheme == "sqlite":
        path = parts.path[1:]  # sqlite:///events.db -> events.db, sqlite:////a/b -> /a/b
        if parts.netloc or not path:
            raise ConfigurationError(
                f"a SQLite URL is sqlite:///relative/path.db, sqlite:////absolute/path.db or "
                f"sqlite:///:memory:, got {redact(url)}"
            )
        return StoreUrl("sqlite", path, _options(url, query, _SQLITE_OPTIONS))
    if scheme in ("postgresql", "postgres"):
        if not parts.hostname and "host" not in query:
            raise ConfigurationError(f"a PostgreSQL URL needs a host, got {redact(url)}")
        ours = {k: v for k, v in query.items() if k in _POSTGRES_OPTIONS}
        theirs = urlencode({k: v for k, v in query.items() if k not in ours})
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, theirs, parts.fragment))
        return StoreUrl("postgresql", dsn, _options(url, ours, _POSTGRES_OPTIONS))
    if scheme in ("cosmos", "cosmos+http"):
        if parts.username is not None or parts.password is not None:
            raise ConfigurationError(
                f"a Cosmos DB URL must not carry a key (URLs end up in logs): set "
                f"{COSMOS_KEY_VARIABLE} or pass key=..., got {redact(url)}"
            )
        database = parts.path.strip("/")
        if not parts.hostname or "/" in database:
            raise ConfigurationError(
                f"a Cosmos DB URL is cosmos://host:port/database, got {redact(url)}"
            )
        tls = "https" if scheme == "cosmos" else "http"
        options = _options(url, query, _COSMOS_OPTIONS)
        if database:
            options["database"] = database
        return StoreUrl("cosmos", f"{tls}://{parts.netloc}/", options)
    raise ConfigurationError(
        f"unknown store URL scheme {parts.scheme!r} in {redact(url)}; use one of {_schemes()}"
    )


async def open_store(url: str, **options: Any) -> Stores:
    """Open the store `url` names, creating its tables or containers if missing.

    `options` are keyword arguments of the store's `open` (e.g. `schema=` for
    PostgreSQL, `key=` and `safe_window=` for Cosmos DB) and win over the URL's query.
    Use it as `async with await open_store(url) as stores:`; `stores.events`,
    `stores.snapshots` and `stores.projections` go to `SekibanExecutor`.

    Raises `ConfigurationError` for a bad URL or option, or a Cosmos DB URL without a
    key (`key=` or SEKIBAN_COSMOS_KEY); `MissingExtraError` naming the extra when the
    store's driver is not installed; the store's own errors when it cannot be opened.
    """
    parsed = parse_store_url(url)
    merged = {**parsed.options, **options}
    if parsed.kind == "memory":
        if merged:
            raise ConfigurationError(f"memory:// takes no options, got {sorted(merged)}")
        return Stores(InMemoryEventStore(), InMemorySnapshotStore())
    if parsed.kind == "sqlite":
        from sekiban.stores.sqlite import SqliteEventStore

        store: Any = await SqliteEventStore.open(parsed.target, **merged)
    elif parsed.kind == "postgresql":
        from sekiban.stores.postgres import PostgresEventStore

        store = await PostgresEventStore.open(parsed.target, **merged)
    else:
        from sekiban.stores.cosmos import CosmosEventStore

        key = merged.pop("key", None) or os.environ.get(COSMOS_KEY_VARIABLE)
        if not key:
            raise ConfigurationError(
                f"no key for Cosmos DB at {parsed.target}: set {COSMOS_KEY_VARIABLE} or pass "
                "key=..."
            )
        if hasattr(key, "get_secret_value"):  # a pydantic SecretStr from settings
            key = key.get_secret_value()
        store = await CosmosEventStore.open(endpoint=parsed.target, key=key, **merged)
    return Stores(store, store.snapshot_store())


def with_query(url: str, **parameters: str) -> str:
    """`url` with `parameters` added to its query (replacing ones of the same name),
    e.g. `with_query(os.environ["DATABASE_URL"], schema="app")`."""
    # Rebuilt by hand: urlunsplit drops the "//" of a URL without a host, which turns
    # `sqlite:///:memory:` into `sqlite:/:memory:`.
    rest, hash_sign, fragment = url.partition("#")
    base, _, query_text = rest.partition("?")
    query = {**dict(parse_qsl(query_text, keep_blank_values=True)), **parameters}
    return f"{base}?{urlencode(query)}{hash_sign}{fragment}"


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<malformed URL>"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _schemes() -> str:
    return ", ".join(f"{s}://" for s in SCHEMES)


def _seconds(value: str) -> timedelta:
    return timedelta(seconds=float(value))


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("expected true or false")
    return lowered in ("true", "1", "yes")


# Query parameter -> (keyword option of the store's open, how to read the text).
_Options = Mapping[str, tuple[str, Callable[[str], Any]]]
_SQLITE_OPTIONS: _Options = {"busy_timeout_seconds": ("busy_timeout", _seconds)}
_POSTGRES_OPTIONS: _Options = {
    "schema": ("schema", str),
    "table_prefix": ("table_prefix", str),
    "min_size": ("min_size", int),
    "max_size": ("max_size", int),
    "create_schema": ("create_schema", _bool),
}
_COSMOS_OPTIONS: _Options = {
    "container_prefix": ("container_prefix", str),
    "throughput": ("throughput", int),
    "autoscale": ("autoscale", _bool),
    "create": ("create", _bool),
    "safe_window_seconds": ("safe_window", _seconds),
    "max_commit_bytes": ("max_commit_bytes", int),
}


def _options(url: str, query: Mapping[str, str], known: _Options) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, text in query.items():
        if name not in known:
            raise ConfigurationError(
                f"unknown parameter {name!r} in store URL {redact(url)}; known: {sorted(known)}"
            )
        option, read = known[name]
        try:
            options[option] = read(text)
        except ValueError as error:
            raise ConfigurationError(
                f"parameter {name}={text!r} in store URL {redact(url)} is invalid: {error}"
            ) from None
    return options
