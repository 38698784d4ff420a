"""Store URLs: every scheme parses to its store's options, bad URLs say what is wrong."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sekiban import ConfigurationError
from sekiban.stores import (
    InMemoryEventStore,
    InMemorySnapshotStore,
    Stores,
    StoreUrl,
    open_store,
    parse_store_url,
    with_query,
)
from sekiban.stores.sqlite import SqliteEventStore, SqliteProjectionStore


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://", StoreUrl("memory")),
        ("sqlite:///events.db", StoreUrl("sqlite", "events.db")),
        ("sqlite:////var/lib/app/events.db", StoreUrl("sqlite", "/var/lib/app/events.db")),
        ("sqlite:///:memory:", StoreUrl("sqlite", ":memory:")),
        (
            "sqlite:///e.db?busy_timeout_seconds=0.5",
            StoreUrl("sqlite", "e.db", {"busy_timeout": timedelta(milliseconds=500)}),
        ),
        (
            "postgresql://app:pw@db:5432/app?schema=es&table_prefix=bank&sslmode=require",
            StoreUrl(
                "postgresql",
                "postgresql://app:pw@db:5432/app?sslmode=require",
                {"schema": "es", "table_prefix": "bank"},
            ),
        ),
        (
            "postgres://db/app?max_size=4&create_schema=false",
            StoreUrl("postgresql", "postgres://db/app", {"max_size": 4, "create_schema": False}),
        ),
        (
            "cosmos://acct.documents.azure.com:443/orders?container_prefix=es&autoscale=true",
            StoreUrl(
                "cosmos",
                "https://acct.documents.azure.com:443/",
                {"container_prefix": "es", "autoscale": True, "database": "orders"},
            ),
        ),
        (
            "cosmos+http://127.0.0.1:8081/?safe_window_seconds=0",
            StoreUrl("cosmos", "http://127.0.0.1:8081/", {"safe_window": timedelta(0)}),
        ),
    ],
)
def test_each_scheme_parses_to_its_store_and_options(url: str, expected: StoreUrl) -> None:
    assert parse_store_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://host/db", "unknown store URL scheme 'mysql'"),
        ("events.db", "looks like 'scheme://...'"),
        ("memory://somewhere", "memory:// takes no host"),
        ("sqlite://", "a SQLite URL is"),
        ("sqlite://host/events.db", "a SQLite URL is"),
        ("sqlite:///e.db?timeout=3", "unknown parameter 'timeout'"),
        ("sqlite:///e.db?busy_timeout_seconds=soon", "busy_timeout_seconds='soon'"),
        ("sqlite:///e.db?busy_timeout_seconds=1&busy_timeout_seconds=2", "repeats"),
        ("postgresql:///db", "needs a host"),
        ("postgresql://u:pw@host:99999/db", "Port out of range"),
        ("postgresql://h/db?max_size=many", "max_size='many'"),
        ("postgresql://h/db?create_schema=maybe", "expected true or false"),
        ("cosmos://:c2VjcmV0@host/db", "must not carry a key"),
        ("cosmos:///db", "cosmos://host:port/database"),
        ("cosmos://host/db/extra", "cosmos://host:port/database"),
        ("cosmos://host/db?key=abc", "unknown parameter 'key'"),
    ],
)
def test_bad_urls_raise_configuration_error_saying_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        parse_store_url(url)


def test_messages_never_repeat_a_password() -> None:
    for url in ("postgresql://u:hunter2@host:99999/db", "cosmos://u:hunter2@host/db"):
        with pytest.raises(ConfigurationError) as error:
            parse_store_url(url)
        assert "hunter2" not in str(error.value)
        assert "***" in str(error.value)


async def test_a_cosmos_url_without_a_key_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEKIBAN_COSMOS_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SEKIBAN_COSMOS_KEY"):
        await open_store("cosmos://127.0.0.1:1/db")


async def test_memory_url_opens_memory_stores_and_refuses_options() -> None:
    async with await open_store("memory://") as stores:
        assert isinstance(stores.events, InMemoryEventStore)
    with pytest.raises(ConfigurationError, match="no options"):
        await open_store("memory://", schema="x")


async def test_stores_unpack_in_two_and_have_the_projection_store_beside_them(
    tmp_path: Path,
) -> None:
    async with await open_store("memory://") as stores:
        events, _ = stores
        assert isinstance(events, InMemoryEventStore)
        assert stores.projections is stores.projections is events.projection_store()
    async with await open_store(f"sqlite:///{tmp_path / 'e.db'}") as stores:
        assert isinstance(stores.projections, SqliteProjectionStore)
        assert await stores.projections.names() == []


async def test_an_event_store_without_a_projection_store_says_so() -> None:
    stores = Stores(object(), InMemorySnapshotStore())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="has no projection_store"):
        stores.projections  # noqa: B018


async def test_keyword_options_win_over_the_query(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}?busy_timeout_seconds=7"
    async with await open_store(url, busy_timeout=timedelta(0)) as stores:
        events, _ = stores
        assert isinstance(events, SqliteEventStore)
        assert events._db._busy_timeout_ms == 0


async def test_leaving_async_with_closes_the_store(tmp_path: Path) -> None:
    async with await SqliteEventStore.open(tmp_path / "e.db") as store:
        assert [b async for b in store.read_all()] == []
    with pytest.raises(Exception, match="closed"):
        [b async for b in store.read_all()]


def test_with_query_adds_and_replaces_parameters() -> None:
    assert with_query("postgresql://h/db?sslmode=require&schema=a", schema="b") == (
        "postgresql://h/db?sslmode=require&schema=b"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///:memory:", "sqlite:///:memory:?busy_timeout_seconds=1"),
        ("sqlite:////var/events.db", "sqlite:////var/events.db?busy_timeout_seconds=1"),
        ("sqlite:///events.db", "sqlite:///events.db?busy_timeout_seconds=1"),
    ],
)
def test_with_query_keeps_urls_without_a_host_openable(url: str, expected: str) -> None:
    assert with_query(url, busy_timeout_seconds="1") == expected
    assert parse_store_url(expected).kind == "sqlite"
