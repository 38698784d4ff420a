import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from sekiban.cli import app


def test_db_init_creates_sqlite_tables_and_is_repeatable(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    for _ in range(2):
        result = CliRunner().invoke(app, ["db", "init", "--store", f"sqlite:///{path}"])
        assert result.exit_code == 0, result.output
    objects = set(sqlite3.connect(path).execute("SELECT type, name FROM sqlite_master").fetchall())
    tables = {("table", "commits"), ("view", "events"), ("table", "snapshots")}
    assert tables | {("table", "projections")} <= objects


def test_db_init_takes_the_store_url_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.db"
    env = {"SEKIBAN_STORE_URL": f"sqlite:///{path}"}
    result = CliRunner().invoke(app, ["db", "init"], env=env)
    assert result.exit_code == 0, result.output
    assert path.exists()


def test_db_init_refuses_a_bad_store_url() -> None:
    result = CliRunner().invoke(app, ["db", "init", "--store", "mysql://host/db"])
    assert result.exit_code != 0
    assert "unknown store URL scheme 'mysql'" in result.output


def _seeded_store(path: Path, streams: int = 2, per_stream: int = 3) -> str:
    import asyncio

    from sekiban.stores import open_store
    from tests.runner_domain import append_deposits

    url = f"sqlite:///{path}"

    async def seed() -> None:
        async with await open_store(url) as stores:
            await append_deposits(stores.events, streams, per_stream)

    asyncio.run(seed())
    return url


DOMAIN = ["--domain", "tests.runner_domain:domain"]


def test_projections_status_shows_each_projection_behind_before_any_run(tmp_path: Path) -> None:
    import json

    url = _seeded_store(tmp_path / "events.db")
    result = CliRunner().invoke(app, ["projections", "status", "--store", url, *DOMAIN, "--json"])
    assert result.exit_code == 0, result.output
    statuses = {s["name"]: s for s in json.loads(result.output)}
    assert set(statuses) == {"account-list", "applied-events", "picky"}
    assert statuses["picky"]["checkpoint"] is None
    assert (statuses["picky"]["position"], statuses["picky"]["lag_events"]) == (0, 6)


def test_projections_rebuild_saves_the_state_at_the_head(tmp_path: Path) -> None:
    import json

    url = _seeded_store(tmp_path / "events.db")
    rebuilt = CliRunner().invoke(app, ["projections", "rebuild", "picky", "--store", url, *DOMAIN])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "picky rebuilt up to position 6" in rebuilt.output
    status = CliRunner().invoke(
        app, ["projections", "status", "--store", url, *DOMAIN, "--projector", "picky", "--json"]
    )
    (picky,) = json.loads(status.output)
    assert (picky["checkpoint"], picky["events_applied"], picky["lag_events"]) == (6, 6, 0)


def test_projections_run_refuses_an_unknown_projector(tmp_path: Path) -> None:
    url = _seeded_store(tmp_path / "events.db", 1, 1)
    result = CliRunner().invoke(
        app, ["projections", "run", "--store", url, *DOMAIN, "--projector", "nope"]
    )
    assert result.exit_code == 2
    assert "nope" in result.output
