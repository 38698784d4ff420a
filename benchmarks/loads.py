"""Aggregate load time against history length, with and without a snapshot, sekiban
side by side with the `eventsourcing` package on the same database in the same run.

For each engine and each history length n, one account of n events is seeded in each
framework, with a snapshot at version n - `SNAPSHOT_LAG`. Then four loads are timed:

- sekiban, full replay: `EventReplayOptimizer.load` without a snapshot store (what
  `SekibanExecutor.load` does when snapshots are off);
- sekiban, snapshot: the same with the snapshot store: snapshot + `SNAPSHOT_LAG` events;
- eventsourcing, full replay: `Repository.get` of a repository without a snapshot store;
- eventsourcing, snapshot: `app.repository.get` with snapshotting on (snapshot +
  `SNAPSHOT_LAG` events, taken with `app.take_snapshot(id, version=n - SNAPSHOT_LAG)`).

At `CURRENT_SNAPSHOT_HISTORY` events, both frameworks also load one more account whose
snapshot is at its last event (lag 0: the snapshot read alone, as right after a command
that took it).

Each load is checked (right version, snapshot used or not) and timed alone, in rounds
that take every case of every history in turn once all are seeded; the median of all
runs is reported. Peak memory is one
more, traced, run of each load.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.domains import AccountProjector, Bank, bench_domain
from benchmarks.engines import Engine, Stores
from benchmarks.progress import Progress
from benchmarks.seeding import seed_eventsourcing, seed_sekiban
from benchmarks.timing import median, peak_memory, time_calls
from sekiban import PartitionKeys, Serializer
from sekiban.loading import EventReplayOptimizer

HISTORIES = (10, 100, 1_000, 10_000, 100_000)
SNAPSHOT_LAG = 5
"""Events between the snapshot and the end of the stream: a snapshot load replays these."""
CURRENT_SNAPSHOT_HISTORY = 10_000
"""The history at which a snapshot at the last event (lag 0) is also timed."""
COSMOS_MAX_HISTORY = 10_000
"""The local Cosmos DB server takes ~100-300 appends/s and reads slowly: longer
histories there would take minutes to seed and read without saying more."""
FRAMEWORKS = ("sekiban", "eventsourcing")


@dataclass(frozen=True)
class LoadPlan:
    """What to measure: history lengths, and how long to spend on each load."""

    histories: tuple[int, ...] = HISTORIES
    budget_s: float = 1.5
    rounds: int = 5
    max_runs: int = 10_000
    measure_memory: bool = True
    cosmos_max_history: int = COSMOS_MAX_HISTORY

    @classmethod
    def quick(cls) -> LoadPlan:
        return cls(histories=(10, 100, 1_000, 10_000), budget_s=0.2, rounds=3)


@dataclass
class LoadCase:
    """One load, timed: `seconds` holds every run."""

    engine: str
    framework: str
    snapshot: bool
    history: int
    seconds: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    lag: int = SNAPSHOT_LAG
    """Events between the snapshot and the end of the stream (snapshot loads)."""

    @property
    def median_ms(self) -> float:
        return median(self.seconds) * 1000


@dataclass
class LoadResults:
    cases: list[LoadCase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def get(
        self,
        engine: str,
        framework: str,
        snapshot: bool,
        history: int,
        lag: int = SNAPSHOT_LAG,
    ) -> LoadCase | None:
        key = (engine, framework, snapshot, history, lag)
        for case in self.cases:
            if (case.engine, case.framework, case.snapshot, case.history, case.lag) == key:
                return case
        return None

    def engines(self) -> list[str]:
        return list(dict.fromkeys(case.engine for case in self.cases))

    def histories(self, engine: str) -> list[int]:
        return sorted({case.history for case in self.cases if case.engine == engine})


Loader = Callable[[], Awaitable[Any]]


class LoadSubject(Protocol):
    """One framework's side of the comparison: seeds accounts, gives their loads."""

    framework: str

    async def seed(self, history: int, lag: int) -> Any:
        """A new account of `history` events, snapshotted `lag` events before its end."""
        ...

    def loader(self, account: Any, history: int, snapshot: bool, lag: int) -> Loader:
        """A load of `account`, checked, with or without the snapshot."""
        ...


class SekibanLoads:
    """Loads through `EventReplayOptimizer`, with and without the snapshot store."""

    framework = "sekiban"

    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.serializer = Serializer(bench_domain())
        self.projector = AccountProjector()
        self.replay = EventReplayOptimizer(stores.events, self.serializer)
        self.from_snapshot = EventReplayOptimizer(stores.events, self.serializer, stores.snapshots)

    async def seed(self, history: int, lag: int) -> PartitionKeys:
        return await seed_sekiban(
            self.stores, self.serializer, history, snapshot_at=history - lag or None
        )

    def loader(self, account: PartitionKeys, history: int, snapshot: bool, lag: int) -> Loader:
        optimizer, projector = (self.from_snapshot if snapshot else self.replay), self.projector
        expected = lag if snapshot else history

        async def load() -> None:
            stats = (await optimizer.load(projector, account)).statistics
            if stats.events_replayed != expected or stats.from_snapshot != snapshot:
                raise AssertionError(f"sekiban load of {history} events went wrong: {stats}")

        return load


class EventsourcingLoads:
    """`Repository.get`, with and without the application's snapshot store."""

    framework = "eventsourcing"

    def __init__(self, app: Bank) -> None:
        from eventsourcing.application import Repository

        self.app = app
        self.replay: Repository[uuid.UUID] = Repository(app.repository.event_store)

    async def seed(self, history: int, lag: int) -> uuid.UUID:
        return seed_eventsourcing(self.app, history, snapshot_at=history - lag or None)

    def loader(self, account: uuid.UUID, history: int, snapshot: bool, lag: int) -> Loader:
        repository = self.app.repository if snapshot else self.replay

        async def load() -> None:
            if repository.get(account).version != history:
                raise AssertionError(f"eventsourcing load of {history} events went wrong")

        return load


async def run_loads(engines: list[Engine], plan: LoadPlan, progress: Progress) -> LoadResults:
    """Seed and time every (engine, history, framework, snapshot or not) load."""
    results = LoadResults()
    for engine in engines:
        histories = list(plan.histories)
        if engine.name == "cosmos":
            histories = [h for h in histories if h <= plan.cosmos_max_history]
            if len(histories) < len(plan.histories):
                results.notes.append(
                    f"cosmos: histories capped at {plan.cosmos_max_history:,} events (the "
                    "local server appends ~100-300 commits/s and reads slowly)"
                )
        if not engine.eventsourcing:
            results.notes.append(f"{engine.name}: sekiban only (eventsourcing cannot run there)")
        async with AsyncExitStack() as stack:
            subjects: list[LoadSubject] = [
                SekibanLoads(await stack.enter_async_context(engine.sekiban_stores()))
            ]
            if engine.eventsourcing:
                app = engine.eventsourcing_app(True, automatic=False)
                subjects.append(EventsourcingLoads(await stack.enter_async_context(app)))
            steps = len(histories) * (1 + plan.rounds) + (1 if plan.measure_memory else 0)
            progress.begin(f"loads on {engine.name}", steps)
            cases: list[tuple[LoadCase, Loader]] = []
            for history in histories:
                progress.step(f"{engine.name}: seeding {history:,}-event histories")
                accounts = [await subject.seed(history, SNAPSHOT_LAG) for subject in subjects]
                cases += [
                    (
                        LoadCase(engine.name, subject.framework, snapshot, history),
                        subject.loader(account, history, snapshot, SNAPSHOT_LAG),
                    )
                    for snapshot in (False, True)
                    for subject, account in zip(subjects, accounts, strict=True)
                ]
                if history == CURRENT_SNAPSHOT_HISTORY:
                    for subject in subjects:
                        account = await subject.seed(history, 0)
                        cases.append(
                            (
                                LoadCase(engine.name, subject.framework, True, history, lag=0),
                                subject.loader(account, history, True, 0),
                            )
                        )
            # Rounds over every case in turn, all histories seeded first: a burst of load
            # on the machine (a neighbour, a server's housekeeping) or a slow drift then
            # spreads over all cases instead of skewing one of them.
            for round_ in range(plan.rounds):
                for history in histories:
                    progress.step(
                        f"{engine.name}: round {round_ + 1}/{plan.rounds}, {history:,} events"
                    )
                    for case, load in cases:
                        if case.history == history:
                            case.seconds += await time_calls(
                                load,
                                budget_s=plan.budget_s / plan.rounds,
                                min_runs=1,
                                max_runs=plan.max_runs // plan.rounds,
                                warm_up=round_ == 0,
                            )
            if plan.measure_memory:
                progress.step(f"{engine.name}: peak memory of each load")
                for case, load in cases:
                    case.peak_bytes = await peak_memory(load)
            results.cases += [case for case, _ in cases]
    return results


def speedup(
    results: LoadResults, engine: str, framework: str, history: int, lag: int = SNAPSHOT_LAG
) -> float | None:
    """Full replay time / snapshot load time (snapshot `lag` events before the end)."""
    full = results.get(engine, framework, False, history)
    snap = results.get(engine, framework, True, history, lag)
    return full.median_ms / snap.median_ms if full and snap else None


def versus_eventsourcing(
    results: LoadResults, engine: str, snapshot: bool, history: int
) -> float | None:
    """eventsourcing's load time / sekiban's: above 1, sekiban is faster."""
    ours = results.get(engine, "sekiban", snapshot, history)
    theirs = results.get(engine, "eventsourcing", snapshot, history)
    return theirs.median_ms / ours.median_ms if ours and theirs else None
