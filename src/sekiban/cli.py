"""The `sekiban` command."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

from sekiban._extras import require_extra

with require_extra("cli", "the sekiban command"):
    import typer
    from rich.console import Console

app = typer.Typer(help="sekiban: event sourcing with snapshot management.", no_args_is_help=True)
db = typer.Typer(help="Event store databases.", no_args_is_help=True)
app.add_typer(db, name="db")
console = Console()


@db.command("init")
def db_init(
    postgres: Annotated[
        str | None, typer.Option(help="PostgreSQL DSN (default: SEKIBAN_POSTGRES_DSN)")
    ] = None,
    schema: Annotated[str, typer.Option(help="PostgreSQL schema")] = "public",
    table_prefix: Annotated[str, typer.Option(help="table name prefix")] = "sekiban",
    sqlite: Annotated[Path | None, typer.Option(help="SQLite database file")] = None,
) -> None:
    """Create the event and snapshot tables if they do not exist (safe to repeat)."""
    if postgres is None and sqlite is None:
        postgres = os.environ.get("SEKIBAN_POSTGRES_DSN") or None
    if (postgres is None) == (sqlite is None):
        raise typer.BadParameter(
            "give exactly one of --postgres (or SEKIBAN_POSTGRES_DSN) or --sqlite"
        )
    asyncio.run(_init(postgres, schema, table_prefix, sqlite))


async def _init(postgres: str | None, schema: str, prefix: str, sqlite: Path | None) -> None:
    if sqlite is not None:
        from sekiban.stores.sqlite import SqliteEventStore

        await (await SqliteEventStore.open(sqlite)).close()
        console.print(f"SQLite event and snapshot tables ready in {sqlite}")
        return
    from sekiban.stores.postgres import PostgresEventStore

    assert postgres is not None
    store = await PostgresEventStore.connect(postgres, schema=schema, table_prefix=prefix)
    await store.close()
    console.print(
        f"PostgreSQL tables {schema}.{prefix}_events and {schema}.{prefix}_snapshots ready"
    )


if __name__ == "__main__":
    app()
