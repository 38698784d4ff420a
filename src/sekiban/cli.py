"""The `sekiban` command."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from sekiban._extras import require_extra
from sekiban.stores.urls import parse_store_url, redact

if TYPE_CHECKING:
    from sekiban.core.domain_types import DomainTypes
    from sekiban.core.partition_keys import PartitionKeys
    from sekiban.settings import SekibanSettings
    from sekiban.verify import VerifyReport

with require_extra("cli", "the sekiban command"):
    import typer
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

app = typer.Typer(help="sekiban: event sourcing with snapshot management.", no_args_is_help=True)
db = typer.Typer(help="Event store databases.", no_args_is_help=True)
events = typer.Typer(help="The events in a store.", no_args_is_help=True)
app.add_typer(db, name="db")
app.add_typer(events, name="events")
console = Console()

StoreOption = Annotated[
    str | None,
    typer.Option(
        help="store URL, e.g. sqlite:///events.db or postgresql://user@host/db?schema=app "
        "(default: SEKIBAN_STORE_URL, from the environment or .env)"
    ),
]


@db.command("init")
def db_init(store: StoreOption = None) -> None:
    """Create the event, snapshot and projection tables (or containers) if they do not
    exist (safe to repeat)."""
    settings, url = _settings(store)
    asyncio.run(_init(settings))
    console.print(f"event, snapshot and projection tables ready in {redact(url)}")


async def _init(settings: SekibanSettings) -> None:
    async with await settings.open_store():
        pass


@events.command("verify")
def events_verify(
    domain: Annotated[
        str,
        typer.Option(
            help="the domain, as module:attribute: a DomainTypes or a function returning "
            "one, e.g. examples.bank:bank_domain"
        ),
    ],
    store: StoreOption = None,
    stream: Annotated[
        str | None,
        typer.Option(help="check only this stream, given as its partition keys root@group@id"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check that every event decodes through the domain (upcasters included), every
    stream's versions are contiguous, every aggregate replays and every snapshot is
    usable. Writes nothing; exits with status 1 when anything is wrong."""
    from sekiban.core.partition_keys import PartitionKeys
    from sekiban.errors import SekibanError

    settings, url = _settings(store)
    parsed = parse_store_url(url)
    if parsed.kind == "sqlite" and not Path(parsed.target).exists():
        raise typer.BadParameter(f"no SQLite file at {parsed.target}", param_hint="--store")
    try:
        keys = None if stream is None else PartitionKeys.parse(stream)
    except SekibanError as error:
        raise typer.BadParameter(str(error), param_hint="--stream") from None
    types = _load_domain(domain)
    try:
        report = asyncio.run(_verify(settings, types, keys, show_progress=not as_json))
    except SekibanError as error:
        console.print(f"[red]cannot verify {redact(url)}: {error}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, redact(url))
    if not report.ok:
        raise typer.Exit(1)


async def _verify(
    settings: SekibanSettings,
    domain: DomainTypes,
    stream: PartitionKeys | None,
    *,
    show_progress: bool,
) -> VerifyReport:
    from sekiban.verify import verify_store

    # Open without creating anything: verifying must not change the store.
    kind = parse_store_url(settings.store_url.get_secret_value()).kind
    options: dict[str, Any] = {
        "postgresql": {"create_schema": False},
        "cosmos": {"create": False},
    }.get(kind, {})
    async with await settings.open_store(**options) as stores:
        with Progress(
            SpinnerColumn(),
            TextColumn("verifying: {task.completed:,} events"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not show_progress,
        ) as progress:
            task = progress.add_task("verify", total=None)
            return await verify_store(
                stores.events,
                domain,
                snapshot_store=stores.snapshots,
                stream=stream,
                progress=lambda n: progress.update(task, completed=n),
            )


def _print_report(report: VerifyReport, where: str) -> None:
    console.print(
        f"{where}: {report.events:,} events in {report.streams:,} streams, "
        f"{report.replayed_streams:,} aggregates replayed, {report.snapshots:,} snapshots "
        f"checked ({report.stale_snapshots:,} stale: rebuilt on their next load)"
    )
    if report.unprojected_groups:
        groups = ", ".join(sorted(report.unprojected_groups))
        console.print(f"no projector is named after group(s) {groups}: decoded, not replayed")
    for problem in report.problems:
        console.print(str(problem), style="red", markup=False, highlight=False)
    omitted = sum(report.counts.values()) - len(report.problems)
    if omitted:
        console.print(f"[red]... and {omitted:,} more[/red]")
    if report.ok:
        console.print("[green]no problems found[/green]")
    else:
        counts = ", ".join(f"{n:,} {kind.value}" for kind, n in sorted(report.counts.items()))
        console.print(f"[red]problems: {counts}[/red]")


def _settings(store: str | None) -> tuple[SekibanSettings, str]:
    """Settings with `store` as the store URL (else the environment's), and the URL."""
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
    return settings, url


def _load_domain(spec: str) -> DomainTypes:
    """The `DomainTypes` that `module:attribute` names (called if it is a function).

    The name comes from the command line, never from stored data."""
    from sekiban.core.domain_types import DomainTypes

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {spec!r}", param_hint="--domain")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's own package
    try:
        value: Any = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise typer.BadParameter(f"cannot load {spec}: {error}", param_hint="--domain") from None
    if callable(value) and not isinstance(value, (DomainTypes, type)):
        value = value()
    if not isinstance(value, DomainTypes):
        raise typer.BadParameter(
            f"{spec} is a {type(value).__name__}, not a DomainTypes", param_hint="--domain"
        )
    return value


if __name__ == "__main__":
    app()
