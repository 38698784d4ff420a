import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from sekiban.cli import app


def test_db_init_creates_sqlite_tables_and_is_repeatable(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    for _ in range(2):
        result = CliRunner().invoke(app, ["db", "init", "--sqlite", str(path)])
        assert result.exit_code == 0, result.output
    objects = set(sqlite3.connect(path).execute("SELECT type, name FROM sqlite_master").fetchall())
    assert {("table", "commits"), ("view", "events"), ("table", "snapshots")} <= objects


def test_db_init_needs_exactly_one_target(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["db", "init"], env={"SEKIBAN_POSTGRES_DSN": ""})
    assert result.exit_code != 0
    assert "exactly one" in result.output
