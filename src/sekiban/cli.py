"""The `sekiban` command."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

from sekiban._extras import require_extra
from sekiban.stores.urls import parse_store_url, redact

if TYPE_CHECKING:
    from sekiban.settings import SekibanSettings

with require_extra("cli", "the sekiban command"):
    import typer
    from rich.console import Console

app = typer.Typer(help="sekiban: event sourcing with snapshot management.", no_args_is_help=True)
db = typer.Typer(help="Event store databases.", no_args_is_help=True)
app.add_typer(db, name="db")
console = Console()


@db.command("init")
def db_init(
    store: Annotated[
        str | None,
        typer.Option(
            help="store URL, e.g. sqlite:///events.db or postgresql://user@host/db?schema=app "
            "(default: SEKIBAN_STORE_URL, from the environment or .env)"
        ),
    ] = None,
) -> None:
    """Create the event and snapshot tables (or containers) if they do not exist (safe to
    repeat)."""
    from sekiban.errors import ConfigurationError
    from sekiban.settings import SekibanSettings

    try:
        settings = SekibanSettings() if store is None else SekibanSettings(store_url=store)
        url = settings.store_url.get_secret_value()
        if parse_store_url(url).kind == "memory":
            raise ConfigurationError(
                "memory:// keeps nothing: give a SQLite, PostgreSQL or Cosmos URL"
            )
    except ConfigurationError as error:
        raise typer.BadParameter(str(error), param_hint="--store") from None
    asyncio.run(_init(settings))
    console.print(f"event and snapshot tables ready in {redact(url)}")


async def _init(settings: SekibanSettings) -> None:
    async with await settings.open_store():
        pass


if __name__ == "__main__":
    app()
