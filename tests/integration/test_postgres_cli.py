import asyncio

import asyncpg
from typer.testing import CliRunner

from sekiban.cli import app
from sekiban.stores import with_query
from tests.conformance.backends import require_env


async def _tables_then_drop(dsn: str, schema: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        return {r["table_name"] for r in rows}
    finally:
        await connection.close()


def test_db_init_creates_postgres_tables() -> None:
    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    url = with_query(dsn, schema="cli_init")
    result = CliRunner().invoke(app, ["db", "init", "--store", url])
    assert result.exit_code == 0, result.output
    tables = asyncio.run(_tables_then_drop(dsn, "cli_init"))
    assert tables == {"sekiban_events", "sekiban_snapshots", "sekiban_projections"}
