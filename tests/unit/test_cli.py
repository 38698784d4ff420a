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
