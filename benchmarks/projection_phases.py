"""The processes `benchmarks.projection_scale` starts: one phase each, so the peak
resident memory a phase reports is its own.

    python -m benchmarks.projection_phases PHASE STORE_URL [--projector counts|list]
        [--blobs DIR] [--out-of-line-above BYTES] [--accounts N] [--writers N]

Phases (each prints one JSON object on stdout):
- `seed`: append `--accounts` accounts of `--events-per-account` events, one commit per
  account (an "opened" event and deposits), `--writers` appends at a time;
- `build`: catch the projection up from position 0, then persist it; time and memory
  of each;
- `restore`: restore the persisted state (and catch up what came after it);
- `persist`: restore the persisted state, then persist it again (e.g. out of line);
- `restart`: open the store and answer from the persisted checkpoint plus the events
  after it: the time from nothing open to the answer.

Memory is resident bytes (`benchmarks.rss`), reported above the process's baseline: its
resident size once the code is imported and the store open, before the phase.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.domains import (
    AccountOpened,
    AccountProjector,
    MoneyDeposited,
    account_keys,
    bench_domain,
)
from benchmarks.rss import PeakRss, rss
from sekiban import (
    AggregateListProjector,
    DomainTypes,
    Event,
    EventMetadata,
    EventPayload,
    MultiProjector,
    Serializer,
    SortableUniqueId,
)
from sekiban.core.events import new_event_id
from sekiban.projections import DirectoryBlobStore, Projection, ProjectionOptions, Projections
from sekiban.stores import Stores, open_store

AccountList = AggregateListProjector.of(AccountProjector)
NEVER = 10**12
"""`persist_every` in the phases: they save when they say so, never on their own."""


class EventTypeCounts(MultiProjector[dict[str, int]]):
    """Events per payload type: a projection whose state stays a few bytes."""

    name = "event-type-counts"

    def initial_state(self) -> dict[str, int]:
        return {}

    def project(self, state: dict[str, int], event: Event[EventPayload]) -> dict[str, int]:
        kind = type(event.payload).__name__
        state[kind] = state.get(kind, 0) + 1
        return state


PROJECTORS: dict[str, type[MultiProjector[Any]]] = {
    "counts": EventTypeCounts,
    "list": AccountList,
}


def scale_domain() -> DomainTypes:
    return bench_domain(EventTypeCounts, AccountList)


def projections(
    stores: Stores, blobs: Path | None, *, out_of_line_above: int | None = None
) -> Projections:
    """The manager the phases use; it saves only when told to."""
    options = ProjectionOptions(persist_every=NEVER)
    if out_of_line_above is not None:
        options = dataclasses.replace(options, out_of_line_above=out_of_line_above)
    return Projections(
        scale_domain(),
        stores.events,
        stores.projections,
        blob_store=None if blobs is None else DirectoryBlobStore(blobs),
        options=options,
    )


async def seed(stores: Stores, accounts: int, per_account: int, writers: int) -> dict[str, Any]:
    """`accounts` new accounts of `per_account` events, each account one commit."""
    serializer = Serializer(scale_domain())
    now = datetime.now(UTC)
    metadata = EventMetadata()
    slots = asyncio.Semaphore(writers)

    async def account() -> None:
        keys = account_keys(uuid.uuid4())
        payloads: list[EventPayload] = [AccountOpened(owner="bench")]
        payloads += [MoneyDeposited(amount=1)] * (per_account - 1)
        events = [
            serializer.to_stored(
                Event(new_event_id(), SortableUniqueId.generate(), v, keys, p, now, metadata)
            )
            for v, p in enumerate(payloads, start=1)
        ]
        async with slots:
            await stores.events.append(events, 0)

    started = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    for _ in range(accounts):
        if len(pending) >= 4 * writers:  # a bounded number of commits built ahead
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(account()))
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    return {"events": accounts * per_account, "seconds": elapsed}


async def build(stores: Stores, args: argparse.Namespace) -> dict[str, Any]:
    """Catch the projection up from 0 with nothing persisted, then save it."""
    manager = projections(stores, args.blobs, out_of_line_above=args.out_of_line_above)
    await stores.projections.delete(PROJECTORS[args.projector].name)
    baseline = rss()
    with PeakRss() as peak:
        started = time.perf_counter()
        projection = await manager.catch_up(PROJECTORS[args.projector])
        seconds = time.perf_counter() - started
    return {
        "events": projection.position,
        "applied": projection.events_applied,
        "seconds": seconds,
        "baseline_rss": baseline,
        "peak_rss_above_baseline": peak.bytes - baseline,
        **await persist(stores, manager, projection, baseline),
    }


async def restore_and_persist(stores: Stores, args: argparse.Namespace) -> dict[str, Any]:
    """Restore the saved state, then save it again (under other options, perhaps)."""
    manager = projections(stores, args.blobs, out_of_line_above=args.out_of_line_above)
    baseline = rss()
    projection = await manager.catch_up(PROJECTORS[args.projector])
    if manager.counters.restored != 1:
        raise SystemExit(f"nothing was restored: {manager.counters}")
    return {"baseline_rss": baseline, **await persist(stores, manager, projection, baseline)}


async def persist(
    stores: Stores, manager: Projections, projection: Projection[Any], baseline: int
) -> dict[str, Any]:
    """Save `projection` and measure it: time, peak memory above the baseline and above
    the state (what `rss()` holds before the save, less the baseline), sizes."""
    held = rss()
    with PeakRss() as peak:
        started = time.perf_counter()
        saved = await manager.persist(projection.projector)
        seconds = time.perf_counter() - started
    if not saved:
        raise SystemExit(f"the state was not saved: {manager.counters}")
    record = await stores.projections.get(projection.name)
    assert record is not None
    codec = projection.projector.state_codec(Serializer(scale_domain()))
    return {
        "state_rss": held - baseline,
        "persist_seconds": seconds,
        "persist_peak_rss_above_baseline": peak.bytes - baseline,
        "persist_peak_rss_above_state": peak.bytes - held,
        "raw_bytes": sum(len(line) + 1 for line in codec.dump(projection.state)),
        "stored_bytes": record.size,
        "out_of_line": record.blob_key is not None,
        "exact_peak": peak.exact,
    }


async def restore(stores: Stores, args: argparse.Namespace) -> dict[str, Any]:
    manager = projections(stores, args.blobs)
    baseline = rss()
    with PeakRss() as peak:
        started = time.perf_counter()
        projection = await manager.catch_up(PROJECTORS[args.projector])
        seconds = time.perf_counter() - started
    if manager.counters.restored != 1:
        raise SystemExit(f"nothing was restored: {manager.counters}")
    return {
        "seconds": seconds,
        "applied_after_restore": projection.events_applied,
        "peak_rss_above_baseline": peak.bytes - baseline,
        "state_rss": rss() - baseline,
        "exact_peak": peak.exact,
    }


async def restart(args: argparse.Namespace) -> dict[str, Any]:
    """From nothing open to the first answer: open the store, restore, catch up."""
    started = time.perf_counter()
    async with await open_store(args.url) as stores:
        opened = time.perf_counter()
        manager = projections(stores, args.blobs)
        projection = await manager.catch_up(PROJECTORS[args.projector])
        answered = time.perf_counter()
        checkpoint = await stores.projections.get(projection.name)
        if manager.counters.restored != 1 or checkpoint is None:
            raise SystemExit(f"nothing was restored: {manager.counters}")
        return {
            "seconds": answered - started,
            "open_seconds": opened - started,
            "restore_and_catch_up_seconds": answered - opened,
            "events_after_checkpoint": projection.events_applied - checkpoint.events_applied,
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.phase == "restart":
        return await restart(args)
    async with await open_store(args.url) as stores:
        if args.phase == "seed":
            return await seed(stores, args.accounts, args.events_per_account, args.writers)
        phase = {"build": build, "restore": restore, "persist": restore_and_persist}
        return await phase[args.phase](stores, args)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.projection_phases", description=__doc__)
    p.add_argument("phase", choices=("seed", "build", "restore", "persist", "restart"))
    p.add_argument("url", help="store URL (sqlite:///FILE, postgresql://...?schema=S)")
    p.add_argument("--projector", choices=sorted(PROJECTORS), default="counts")
    p.add_argument("--blobs", type=Path, help="directory of out-of-line states")
    p.add_argument("--accounts", type=int, default=1000)
    p.add_argument("--events-per-account", type=int, default=10)
    p.add_argument("--writers", type=int, default=1)
    p.add_argument("--out-of-line-above", type=int, help="ProjectionOptions.out_of_line_above")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    print(flush=True)


if __name__ == "__main__":
    main()
