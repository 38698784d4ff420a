"""The `sekiban` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

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


@app.command()
def bench(
    suite: Annotated[
        str, typer.Option(help="comma-separated suites: loads, throughput")
    ] = "loads,throughput",
    stores: Annotated[
        str | None,
        typer.Option(
            help="comma-separated: memory, sqlite, sqlite-full, postgres, cosmos "
            "(default: all; --quick: memory,sqlite). Stores without a server are skipped."
        ),
    ] = None,
    histories: Annotated[str | None, typer.Option(help="history lengths, e.g. 10,100,1000")] = None,
    quick: Annotated[
        bool, typer.Option(help="small sizes on memory and SQLite, within a minute; saves nothing")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="print one JSON object on stdout (quick: the summary)")
    ] = False,
    repeat: Annotated[
        int | None, typer.Option(help="throughput repetitions (default 5, quick 3)")
    ] = None,
    output: Annotated[Path, typer.Option(help="where results are written")] = Path(
        "benchmarks/results"
    ),
    save: Annotated[
        bool | None, typer.Option(help="write results to --output (default: unless --quick)")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="also write the plots here (e.g. docs/img)")
    ] = None,
) -> None:
    """Benchmark loads (snapshot vs replay), snapshot sizes and throughput vs eventsourcing.

    Needs the `bench` extra. Progress goes to stderr; --json prints one JSON object.
    """
    import importlib.util

    if importlib.util.find_spec("eventsourcing") is None:
        raise typer.BadParameter(
            "the eventsourcing package is missing: pip install 'sekiban[bench]'"
        )
    from sekiban.benchmarking.progress import ProgressBars
    from sekiban.benchmarking.suites import BenchOptions, run_bench, summary, write_results

    changes: dict[str, Any] = {
        "suites": tuple(_names(suite)),
        "command": " ".join(["sekiban", *sys.argv[1:]]),
    }
    if stores is not None:
        changes["stores"] = tuple(_names(stores))
    if histories is not None:
        changes["histories"] = tuple(int(h) for h in _names(histories))
    if repeat is not None:
        changes["repeat"] = repeat
    options = BenchOptions.for_quick(**changes) if quick else BenchOptions(**changes)
    errors = Console(stderr=True)
    try:
        with ProgressBars(errors) as progress:
            run = asyncio.run(run_bench(options, progress))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    written = write_results(run, output, images) if (not quick if save is None else save) else []
    figures = summary(run)
    if json_output:
        if quick:
            print(json.dumps(figures))
        else:
            print(json.dumps({"summary": figures, "files": [str(p) for p in written]}))
        return
    table = Table("figure (sekiban / eventsourcing on SQLite unless named)", "value")
    for name, value in figures.items():
        table.add_row(name, f"{value:,.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    if run.loads is not None:
        from sekiban.benchmarking.loads_report import load_targets

        targets = Table("target", "measured", "met")
        for target in load_targets(run.loads):
            met = "n/a" if target.met is None else ("yes" if target.met else "NO")
            targets.add_row(target.name, target.measured, met)
        console.print(targets)
    for path in written:
        console.print(f"wrote {path}")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


if __name__ == "__main__":
    app()
