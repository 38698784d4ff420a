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
    from sekiban.projections import Projections, ProjectionStatus
    from sekiban.settings import SekibanSettings
    from sekiban.stores import Stores
    from sekiban.verify import VerifyReport

with require_extra("cli", "the sekiban command"):
    import typer
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

app = typer.Typer(help="sekiban: event sourcing with snapshot management.", no_args_is_help=True)
db = typer.Typer(help="Event store databases.", no_args_is_help=True)
events = typer.Typer(help="The events in a store.", no_args_is_help=True)
projections = typer.Typer(help="Multi-projections: run, status, rebuild.", no_args_is_help=True)
app.add_typer(db, name="db")
reactions = typer.Typer(help="Reactions, process managers and the outbox.", no_args_is_help=True)
app.add_typer(events, name="events")
app.add_typer(projections, name="projections")
app.add_typer(reactions, name="reactions")
console = Console()

StoreOption = Annotated[
    str | None,
    typer.Option(
        help="store URL, e.g. sqlite:///events.db or postgresql://user@host/db?schema=app "
        "(default: SEKIBAN_STORE_URL, from the environment or .env)"
    ),
]


DomainOption = Annotated[
    str,
    typer.Option(
        help="the domain, as module:attribute: a DomainTypes or a function returning "
        "one, e.g. examples.bank:bank_domain"
    ),
]
ProjectorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--projector", help="a multi-projector by name (repeat for several; default: all)"
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
    domain: DomainOption,
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
    async with await settings.open_store(**_existing(settings)) as stores:
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


@reactions.command("status")
def reactions_status(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Show each reaction's lag and parked events (when the store keeps checkpoints) and
    the outbox's pending, failed and dead-lettered side effects. Writes nothing."""
    from sekiban.reactions.status import dumps

    settings, url = _settings(store)
    status = asyncio.run(_reactions_status(settings))
    if as_json:
        print(dumps(status))
        return
    console.print(f"{redact(url)}: head position {status.head:,}")
    for checkpoint in status.checkpoints:
        console.print(
            f"reaction {checkpoint.name}: position {checkpoint.position:,}, "
            f"lag {checkpoint.lag:,}, parked {len(checkpoint.parked)}",
            markup=False,
        )
        for parked in checkpoint.parked:
            if parked.get("held_behind"):
                why = f"held behind {parked['held_behind']}"
                console.print(
                    f"  held {parked['label']} ({parked['event_id']}): {why}", markup=False
                )
            else:
                console.print(
                    f"  parked {parked['label']} ({parked['event_id']}): {parked['error']}",
                    markup=False,
                )
    counts = ", ".join(f"{n:,} {kind.replace('_', '-')}" for kind, n in status.outbox.items())
    console.print(f"outbox: {counts}")
    for item in status.undelivered:
        if item.attempts:
            console.print(
                f"  {item.status} {item.effect_id} ({item.kind}, {item.attempts} attempts): "
                f"{item.error}",
                markup=False,
            )


async def _reactions_status(settings: SekibanSettings) -> Any:
    from sekiban.reactions.status import reactions_status as read_status

    async with await settings.open_store() as stores:
        checkpoints = getattr(stores.events, "projection_store", None)
        return await read_status(stores.events, checkpoints() if checkpoints else None)


@reactions.command("run")
def reactions_run(
    domain: Annotated[
        str, typer.Option(help="the domain, as module:attribute (REACTION_TYPES registered)")
    ],
    hosted: Annotated[
        str,
        typer.Option(
            "--reactions",
            help="module:attribute naming the reactions, process managers and outbox "
            "dispatchers to run (a list, or a function returning one)",
        ),
    ],
    store: StoreOption = None,
    once: Annotated[bool, typer.Option("--once", help="run until idle, then exit")] = False,
    poll: Annotated[float, typer.Option(help="seconds between polls at first when idle")] = 0.2,
    max_backoff: Annotated[
        float, typer.Option(help="the longest wait between polls (and retries), seconds")
    ] = 5.0,
) -> None:
    """Run reactions against the store until SIGTERM or SIGINT (Ctrl-C), which save the
    checkpoints. Woken by appends on PostgreSQL (LISTEN/NOTIFY), else polling; store
    faults are retried with backoff. Without a projection store beside the event store
    the checkpoints live in memory: a restart re-reads from the start, which re-sends
    only commands that are deduplicated and delivers no side effect twice."""
    from sekiban.reactions import OutboxDispatcher, ProcessManager, Reaction

    settings, url = _settings(store)
    types = _load_domain(domain)
    value = _load_attribute(hosted, "--reactions")
    if callable(value) and not isinstance(value, type):
        value = value()
    items = list(value) if isinstance(value, (list, tuple)) else []
    allowed = (Reaction, ProcessManager, OutboxDispatcher)
    if not items or not all(isinstance(i, allowed) for i in items):
        raise typer.BadParameter(
            f"{hosted} must give reactions, process managers or outbox dispatchers",
            param_hint="--reactions",
        )
    timing = {"poll_interval": poll, "max_backoff": max_backoff}
    from sekiban.errors import ConfigurationError

    try:
        done = asyncio.run(_run_reactions(settings, types, items, once=once, timing=timing))
    except ConfigurationError as error:
        raise typer.BadParameter(str(error)) from None
    console.print(f"{redact(url)}: {done:,} events and due items handled")


async def _run_reactions(
    settings: SekibanSettings,
    domain: DomainTypes,
    items: list[Any],
    *,
    once: bool,
    timing: dict[str, float],
) -> int:
    import signal
    from datetime import timedelta

    from sekiban.executor import SekibanExecutor
    from sekiban.reactions import ReactionRunner

    async with await settings.open_store() as stores:
        checkpoints = getattr(stores.events, "projection_store", None)
        executor = SekibanExecutor(domain, stores.events, snapshot_store=stores.snapshots)
        runner = ReactionRunner(
            executor,
            *items,
            store=checkpoints() if checkpoints else None,
            poll_interval=timedelta(seconds=timing["poll_interval"]),
            max_backoff=timedelta(seconds=timing["max_backoff"]),
            leases=_leases(stores.events),
        )
        if once:
            done = await runner.run_until_idle()
            await runner.close()
            return done
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, runner.stop)
        names = ", ".join(runner.subscriptions)
        console.print(f"running {names}: SIGTERM or Ctrl-C stops", markup=False)
        await runner.run()
        return sum(s.handled for s in runner.status())


@reactions.command("retry")
def reactions_retry(
    effect_ids: Annotated[
        list[str] | None, typer.Argument(help="the dead-lettered side effects to retry")
    ] = None,
    store: StoreOption = None,
    all_dead: Annotated[
        bool, typer.Option("--all", help="retry every dead-lettered side effect")
    ] = False,
) -> None:
    """Deliver dead-lettered side effects again (the running dispatcher picks them up)."""
    if not effect_ids and not all_dead:
        raise typer.BadParameter("name the side effects to retry, or pass --all")
    settings, _ = _settings(store)
    revived = asyncio.run(_retry(settings, None if all_dead else list(effect_ids or [])))
    for effect_id in revived:
        console.print(f"retrying {effect_id}", markup=False)
    skipped = set(effect_ids or []) - set(revived)
    for effect_id in sorted(skipped):
        console.print(f"[red]not dead-lettered: {effect_id}[/red]")
    if skipped:
        raise typer.Exit(1)


async def _retry(settings: SekibanSettings, effect_ids: list[str] | None) -> list[str]:
    from sekiban.reactions.status import retry_dead_letters

    async with await settings.open_store() as stores:
        return await retry_dead_letters(stores.events, effect_ids)


@reactions.command("retry-parked")
def reactions_retry_parked(
    name: Annotated[str, typer.Argument(help="the reaction, process manager or dispatcher")],
    event_ids: Annotated[
        list[str] | None, typer.Argument(help="parked event ids (a held one: its head)")
    ] = None,
    store: StoreOption = None,
    all_parked: Annotated[
        bool, typer.Option("--all", help="retry every event the reaction parked")
    ] = False,
) -> None:
    """Hand parked events over to their reaction again, each followed by the events
    held behind it, in order. The request is written to the store: the running
    `sekiban reactions run` acts on it (or the next one to start)."""
    from sekiban.errors import UnknownReactionError

    if not event_ids and not all_parked:
        raise typer.BadParameter("name the parked events to retry, or pass --all")
    if event_ids and all_parked:
        raise typer.BadParameter("name parked events or pass --all, not both")
    settings, _ = _settings(store)
    try:
        chosen, unknown = asyncio.run(
            _retry_parked(settings, name, None if all_parked else list(event_ids or []))
        )
    except UnknownReactionError as error:
        console.print(f"[red]{error}[/red]", markup=True, highlight=False)
        raise typer.Exit(1) from None
    if chosen:
        console.print(f"{name}: retry requested for {len(chosen)} parked events", markup=False)
    else:
        console.print(f"{name}: nothing to retry", markup=False)
    for event_id in unknown:
        console.print(f"[red]not parked by {name}: {event_id}[/red]")
    if unknown:
        raise typer.Exit(1)


async def _retry_parked(
    settings: SekibanSettings, name: str, event_ids: list[str] | None
) -> tuple[list[str], list[str]]:
    from sekiban.reactions.status import request_parked_retry

    async with await settings.open_store() as stores:
        return await request_parked_retry(stores.events, stores.projections, name, event_ids)


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


@projections.command("run")
def projections_run(
    domain: DomainOption,
    store: StoreOption = None,
    projector: ProjectorOption = None,
    poll_interval: Annotated[
        float, typer.Option(help="seconds between polls at first when idle")
    ] = 0.2,
    max_backoff: Annotated[
        float, typer.Option(help="the longest wait between polls (and retries), seconds")
    ] = 5.0,
    persist_every: Annotated[
        int | None, typer.Option(help="events applied between two saves of a state")
    ] = None,
) -> None:
    """Keep the projections caught up with the store until SIGTERM or SIGINT (Ctrl-C),
    then save them and exit 0. Resumes from the saved states."""
    from datetime import timedelta

    from sekiban.errors import ConfigurationError

    settings, _ = _settings(store)
    types = _load_domain(domain)
    try:
        asyncio.run(
            _run_projections(
                settings,
                types,
                projector,
                persist_every,
                poll_interval=timedelta(seconds=poll_interval),
                max_backoff=timedelta(seconds=max_backoff),
            )
        )
    except ConfigurationError as error:
        raise typer.BadParameter(str(error)) from None


async def _run_projections(
    settings: SekibanSettings,
    domain: DomainTypes,
    names: list[str] | None,
    persist_every: int | None,
    **timing: Any,
) -> None:
    import signal

    from sekiban.projections import ProjectionRunner

    async with await settings.open_store() as stores:
        manager = _projections(stores, domain, persist_every)
        runner = ProjectionRunner(
            manager, _projectors(domain, names), leases=_leases(stores.events), **timing
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.stop)
        console.print(f"running {', '.join(runner.names)}: SIGTERM or Ctrl-C stops")
        await runner.run()
        for status in await runner.status():
            console.print(f"{status.name}: stopped at position {status.checkpoint}")


@projections.command("status")
def projections_status(
    domain: DomainOption,
    store: StoreOption = None,
    projector: ProjectorOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the statuses as JSON")] = False,
) -> None:
    """Each projection's saved position and its lag behind the store (events, and the
    age of the oldest event it has not applied)."""
    settings, _ = _settings(store)
    types = _load_domain(domain)
    statuses = asyncio.run(_projection_statuses(settings, types, projector))
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
        return
    from rich.table import Table

    table = Table("projection", "position", "events applied", "lag (events)", "lag (s)")
    for status in statuses:
        table.add_row(
            status.name,
            "-" if status.checkpoint is None else f"{status.position:,}",
            f"{status.events_applied:,}",
            f"{status.lag_events:,}",
            f"{status.lag_seconds:,.1f}",
        )
    console.print(table)


async def _projection_statuses(
    settings: SekibanSettings, domain: DomainTypes, names: list[str] | None
) -> list[ProjectionStatus]:
    from sekiban.core.clock import utc_now
    from sekiban.projections import ProjectionStatus
    from sekiban.projections.status import measure_lag

    async with await settings.open_store(**_existing(settings)) as stores:
        states = stores.projections
        statuses = []
        for projector in _projectors(domain, names):
            record = await states.get(projector.name)
            position = 0 if record is None else record.position
            lag = await measure_lag(stores.events, position, utc_now())
            statuses.append(
                ProjectionStatus(
                    name=projector.name,
                    position=position,
                    checkpoint=None if record is None else record.position,
                    events_applied=0 if record is None else record.events_applied,
                    lag_events=lag.events,
                    lag_seconds=lag.seconds,
                )
            )
        return statuses


@projections.command("rebuild")
def projections_rebuild(
    name: Annotated[str, typer.Argument(help="the multi-projector to rebuild")],
    domain: DomainOption,
    store: StoreOption = None,
) -> None:
    """Build a projection again from the first event, then save it over the stored
    state (which keeps answering until then)."""
    settings, _ = _settings(store)
    types = _load_domain(domain)
    (projector,) = _projectors(types, [name])
    position = asyncio.run(_rebuild(settings, types, projector.name))
    console.print(f"{projector.name} rebuilt up to position {position:,} and saved")


async def _rebuild(settings: SekibanSettings, domain: DomainTypes, name: str) -> int:
    from sekiban.core.clock import utc_now
    from sekiban.projections.status import measure_lag

    async with await settings.open_store() as stores:
        total = (await measure_lag(stores.events, 0, utc_now())).events
        with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(f"rebuilding {name}", total=total)
            counted = _CountingReads(stores.events, lambda n: bar.advance(task, n))
            manager = _projections(stores, domain, None, event_store=counted)
            projection = await manager.rebuild(name)
        return projection.position


class _CountingReads:
    """An event store whose `read_all` reports each batch's size (for a progress bar)."""

    def __init__(self, store: Any, on_batch: Any) -> None:
        self._store, self._on_batch = store, on_batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def read_all(self, after_position: int = 0, batch_size: int = 1000) -> Any:
        async for batch in self._store.read_all(after_position, batch_size):
            self._on_batch(len(batch))
            yield batch


def _projections(
    stores: Stores, domain: DomainTypes, persist_every: int | None, event_store: Any = None
) -> Projections:
    from sekiban.projections import ProjectionOptions, Projections

    options = ProjectionOptions() if persist_every is None else ProjectionOptions(persist_every)
    return Projections(domain, event_store or stores.events, stores.projections, options=options)


def _projectors(domain: DomainTypes, names: list[str] | None) -> list[Any]:
    """The multi-projectors `names` names (default: every registered one)."""
    from sekiban.errors import UnknownTypeError
    from sekiban.projections.runner import registered_projectors

    if not names:
        return registered_projectors(domain)
    try:
        return [domain.multi_projector(name) for name in names]
    except UnknownTypeError as error:
        raise typer.BadParameter(str(error), param_hint="--projector") from None


def _leases(event_store: Any) -> Any:
    """The store's leases, so that of several replicas running the same command one
    runs each projection or reaction (Cosmos DB has none: every replica runs all)."""
    from sekiban.stores.leases import LeaseProvider

    return event_store if isinstance(event_store, LeaseProvider) else None


def _existing(settings: SekibanSettings) -> dict[str, Any]:
    """`open_store` options that open a store without creating anything in it."""
    kind = parse_store_url(settings.store_url.get_secret_value()).kind
    return {"postgresql": {"create_schema": False}, "cosmos": {"create": False}}.get(kind, {})


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

    value = _load_attribute(spec, "--domain")
    if callable(value) and not isinstance(value, (DomainTypes, type)):
        value = value()
    if not isinstance(value, DomainTypes):
        raise typer.BadParameter(
            f"{spec} is a {type(value).__name__}, not a DomainTypes", param_hint="--domain"
        )
    return value


def _load_attribute(spec: str, option: str) -> Any:
    """The object `module:attribute` names (from the command line, never stored data)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected module:attribute, got {spec!r}", param_hint=option)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's own package
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise typer.BadParameter(f"cannot load {spec}: {error}", param_hint=option) from None


if __name__ == "__main__":
    app()
