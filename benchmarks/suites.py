"""`python -m benchmarks`: which suites run where, the headline figures, the files written.

Suites:
- `loads`: aggregate load time against history length, with and without snapshots,
  sekiban and eventsourcing (`loads.py`), and snapshot sizes (`snapshot_sizes.py`);
  on every chosen store except `sqlite-full` (reads do not depend on `synchronous`).
- `throughput`: append and replay throughput, store and executor level, sekiban and
  eventsourcing (`throughput.py`); on the chosen stores eventsourcing can use, except
  `memory` (in-memory appends measure nothing a database does).

Beside the throughput suite, the raw-driver limit (`limits.py`): sqlite3 and asyncpg
writing and reading the same rows at the same durability setting.

`--quick` runs both on SQLite with small sizes, for a check within a minute; SQLite at
synchronous=FULL and PostgreSQL (when reachable) get the store-level append workloads
over many aggregates and the raw-driver limit only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.engines import Engine, engines_for
from benchmarks.environment import environment, load_average
from benchmarks.limits import Limit, durability, measure_limits
from benchmarks.loads import (
    HISTORIES,
    LoadPlan,
    LoadResults,
    run_loads,
    speedup,
    versus_eventsourcing,
)
from benchmarks.progress import Progress
from benchmarks.snapshot_sizes import SnapshotSize, measure_snapshot_sizes
from benchmarks.throughput import (
    Result,
    append_name,
    ratios,
    replay_name,
    run_throughput,
    workloads,
)

SUITES = ("loads", "throughput")
STORES = ("memory", "sqlite", "sqlite-full", "postgres", "cosmos")
QUICK_STORES = ("sqlite", "sqlite-full", "postgres")
QUICK_FULL_ONLY = ("memory", "sqlite")
"""With --quick, the stores that run every workload; the others get the store-level
appends over many aggregates and the raw-driver limit."""
RESULTS = Path("benchmarks/results")
# Throughput workloads: (events per append workload, aggregates, replayed events).
FULL_THROUGHPUT = (5_000, 500, 10_000)
QUICK_THROUGHPUT = (1_000, 100, 0)  # replay: from the loads suite when it runs too
QUICK_OTHERS_EVENTS = 300
"""--quick: events per append workload on the stores outside `QUICK_FULL_ONLY`."""
REPLAY_LIMIT = 10_000
"""Events of the stream the raw-driver replay limit reads (the loads suite's 10k)."""


@dataclass(frozen=True)
class BenchOptions:
    suites: tuple[str, ...] = SUITES
    stores: tuple[str, ...] = STORES
    histories: tuple[int, ...] = HISTORIES
    repeat: int = 5
    quick: bool = False
    command: str = "python -m benchmarks"

    @classmethod
    def for_quick(cls, **changes: Any) -> BenchOptions:
        options = cls(
            stores=QUICK_STORES, histories=LoadPlan.quick().histories, repeat=3, quick=True
        )
        return replace(options, **changes)


@dataclass
class BenchRun:
    options: BenchOptions
    env: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    loads: LoadResults | None = None
    sizes: list[SnapshotSize] = field(default_factory=list)
    throughput: list[Result] | None = None
    limits: list[Limit] = field(default_factory=list)
    durability: dict[str, str] = field(default_factory=dict)


async def run_bench(options: BenchOptions, progress: Progress) -> BenchRun:
    """Run the chosen suites on the chosen stores (those that cannot run are skipped
    and named in `BenchRun.skipped`)."""
    unknown = set(options.suites) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suite {sorted(unknown)}: choose from {', '.join(SUITES)}")
    run = BenchRun(options, environment(options.command))
    with tempfile.TemporaryDirectory(prefix="sekiban-bench-") as directory:
        engines = engines_for(list(options.stores), Path(directory), run.skipped)
        for name, reason in run.skipped.items():
            if not (options.quick and name == "postgres"):  # quick: when reachable
                progress.note(f"skipping {name}: {reason}")
        run.durability = {_key(e.name): durability(e) for e in engines if e.name != "memory"}
        if "loads" in options.suites:
            plan = LoadPlan.quick() if options.quick else LoadPlan()
            plan = replace(plan, histories=options.histories)
            readers = [e for e in engines if e.name != "sqlite-full" and _runs_all(options, e)]
            run.loads = await run_loads(readers, plan, progress)
            progress.begin("snapshot sizes", 1)
            progress.step("snapshot sizes: taking and restoring account and ledger snapshots")
            run.sizes = await measure_snapshot_sizes(
                options.histories, budget_s=0.05 if options.quick else 0.3
            )
        if "throughput" in options.suites:
            events, accounts, replay = QUICK_THROUGHPUT if options.quick else FULL_THROUGHPUT
            if "loads" not in options.suites:
                replay = FULL_THROUGHPUT[2]
            writers = [e for e in engines if e.eventsourcing and e.name != "memory"]
            # The raw-driver limit is measured before and after the frameworks and its
            # samples pooled, so a change of load on the machine meanwhile hits both.
            halves = max(1, (options.repeat + 1) // 2)
            progress.begin("raw-driver limit", len(writers) * (2 * halves + 1))
            before = await _limits(writers, options, accounts, replay, halves, progress)
            work = workloads(events, accounts, replay)
            run.throughput = await run_throughput(
                [e for e in writers if _runs_all(options, e)], work, options.repeat, progress
            )
            others = [e for e in writers if not _runs_all(options, e)]
            if others:
                few = workloads(QUICK_OTHERS_EVENTS, accounts, 0)
                appends = [w for w in few if w.accounts > 1]
                run.throughput += await run_throughput(
                    others, appends, options.repeat, progress, levels=("store",)
                )
            progress.begin("raw-driver limit", len(writers) * (2 * halves + 1))
            after = await _limits(writers, options, accounts, replay, halves, progress)
            for first, second in zip(before, after, strict=True):
                first.seconds += second.seconds
            run.limits = before
        used = {case.engine for case in run.loads.cases} if run.loads else set()
        used |= {result.engine for result in run.throughput or []}
        run.env["engines"] = {e.name: e.settings for e in engines if e.name in used}
    run.env["load_average"]["after"] = load_average()
    return run


def summary(run: BenchRun, engine: str = "sqlite") -> dict[str, Any]:
    """The headline figures on `engine`: each ratio above 1 means sekiban is ahead.

    - `snapshot_load_speedup_10k`: full replay time / snapshot load time, 10,000 events,
      snapshot 5 events before the end (`..._at_last_event`: the snapshot at the end);
    - `replay_vs_eventsourcing`: sekiban's full replay speed / eventsourcing's, 10,000
      events (= their load time / ours);
    - `snapshot_load_vs_eventsourcing`: their snapshot load time / ours, 10,000 events;
    - `append_vs_eventsourcing`: our append throughput / theirs, one event per command
      over many aggregates, store level (`append_10_...`: ten per command;
      `command_...`: the same through the executor against an application command).
    """
    figures: dict[str, Any] = {"engine": engine}
    loads = run.loads
    if loads is not None:
        full = loads.get(engine, "sekiban", False, 10_000)
        snap = loads.get(engine, "sekiban", True, 10_000)
        theirs = loads.get(engine, "eventsourcing", True, 10_000)
        figures |= {
            "snapshot_load_speedup_10k": speedup(loads, engine, "sekiban", 10_000),
            "snapshot_load_speedup_10k_at_last_event": speedup(
                loads, engine, "sekiban", 10_000, lag=0
            ),
            "replay_vs_eventsourcing": versus_eventsourcing(loads, engine, False, 10_000),
            "snapshot_load_vs_eventsourcing": versus_eventsourcing(loads, engine, True, 10_000),
            "replay_events_per_second": 10_000 / (full.median_ms / 1000) if full else None,
            "snapshot_load_ms_10k": snap.median_ms if snap else None,
            "eventsourcing_snapshot_load_ms_10k": theirs.median_ms if theirs else None,
        }
    if run.throughput:
        ratio = ratios(run.throughput)
        accounts = (QUICK_THROUGHPUT if run.options.quick else FULL_THROUGHPUT)[1]
        figures |= {
            "append_vs_eventsourcing": ratio.get((engine, append_name(1, accounts), "store")),
            "append_10_vs_eventsourcing": ratio.get((engine, append_name(10, accounts), "store")),
            "command_vs_eventsourcing": ratio.get((engine, append_name(1, accounts), "executor")),
        }
    figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    return figures | like_for_like_and_of_limit(run)


def like_for_like_and_of_limit(run: BenchRun) -> dict[str, Any]:
    """`like_for_like`: sekiban / eventsourcing per figure and store (`snapshot_load`:
    their time / ours), both at the same durability; `of_limit`: sekiban's rate / the
    raw driver's on the same rows at the same durability; `peer_ceiling`: the
    `like_for_like` ratio sekiban would reach at 100% of the limit (`peer_ceilings`);
    `durability`: that setting per store. Stores are keyed `sqlite`, `sqlite_full`,
    `postgres`."""
    peer: dict[str, dict[str, float]] = {}
    limit: dict[str, dict[str, float]] = {}
    accounts = (QUICK_THROUGHPUT if run.options.quick else FULL_THROUGHPUT)[1]
    rates = {(r.engine, r.workload, r.level, r.framework): r for r in run.throughput or []}
    ratio = ratios(run.throughput or [])
    raw = {(x.engine, x.workload): x.events_per_second for x in run.limits}
    engines = dict.fromkeys(
        [r.engine for r in run.throughput or []]
        + (run.loads.engines() if run.loads else [])
        + [x.engine for x in run.limits]
    )
    for engine in engines:
        if engine == "memory":
            continue
        key = _key(engine)
        for k in (1, 10):
            name = f"append_{k}"
            ours = rates.get((engine, append_name(k, accounts), "store", "sekiban"))
            if ours is None:
                continue
            peer.setdefault(name, {})[key] = ratio[(engine, append_name(k, accounts), "store")]
            if (engine, name) in raw:
                limit.setdefault(name, {})[key] = ours.events_per_second / raw[(engine, name)]
        replay_eps = None
        if run.loads is not None and run.loads.get(engine, "sekiban", False, 10_000):
            full = run.loads.get(engine, "sekiban", False, 10_000)
            assert full is not None
            replay_eps = 10_000 / (full.median_ms / 1000)
            versus = versus_eventsourcing(run.loads, engine, False, 10_000)
            if versus is not None:
                peer.setdefault("replay", {})[key] = versus
            snap = versus_eventsourcing(run.loads, engine, True, 10_000)
            if snap is not None:
                peer.setdefault("snapshot_load", {})[key] = snap
        else:
            replay = rates.get((engine, replay_name(FULL_THROUGHPUT[2]), "store", "sekiban"))
            if replay is not None:
                replay_eps = replay.events_per_second
                peer.setdefault("replay", {})[key] = ratio[
                    (engine, replay_name(FULL_THROUGHPUT[2]), "store")
                ]
        if replay_eps is not None and (engine, "replay") in raw:
            limit.setdefault("replay", {})[key] = replay_eps / raw[(engine, "replay")]
    return {
        "like_for_like": _rounded(peer),
        "of_limit": _rounded(limit),
        "peer_ceiling": _rounded(peer_ceilings(peer, limit)),
        "durability": run.durability,
    }


def peer_ceilings(
    peer: dict[str, dict[str, float]], of_limit: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Per figure and store, the highest ratio to the peer sekiban could reach: its
    ratio / its share of the raw-driver limit, i.e. the ratio at 100% of the limit.

    Sekiban's rate cannot pass the driver's, so a target above the ceiling cannot be
    met by making sekiban faster, only the peer slower. Figures without both a ratio
    and a positive share of the limit (e.g. `snapshot_load`, which has no limit) are
    left out."""
    ceilings: dict[str, dict[str, float]] = {}
    for figure, stores in peer.items():
        for store, ratio in stores.items():
            share = of_limit.get(figure, {}).get(store)
            if share is not None and share > 0:
                ceilings.setdefault(figure, {})[store] = ratio / share
    return ceilings


def _rounded(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {f: {k: round(v, 3) for k, v in d.items()} for f, d in figures.items()}


async def _limits(
    writers: list[Engine],
    options: BenchOptions,
    accounts: int,
    replay: int,
    repeat: int,
    progress: Progress,
) -> list[Limit]:
    limits: list[Limit] = []
    events = (QUICK_THROUGHPUT if options.quick else FULL_THROUGHPUT)[0]
    for engine in writers:
        limits += await measure_limits(
            [engine],
            events if _runs_all(options, engine) else QUICK_OTHERS_EVENTS,
            accounts,
            REPLAY_LIMIT if replay == 0 else replay,
            repeat,
            progress.step,
        )
    return limits


def _key(engine: str) -> str:
    """A store's key in the summary's objects: `sqlite-full` is `sqlite_full`."""
    return engine.replace("-", "_")


def _runs_all(options: BenchOptions, engine: Engine) -> bool:
    """Whether `engine` runs every workload (with --quick, only SQLite at NORMAL does)."""
    return not options.quick or engine.name in QUICK_FULL_ONLY


def write_results(run: BenchRun, directory: Path, images: Path | None = None) -> list[Path]:
    """Write Markdown, JSON and PNG results to `directory` (plots also to `images`, e.g.
    the docs site's image folder); returns the files written."""
    import json

    from benchmarks.loads_report import loads_document, loads_markdown
    from benchmarks.plots import plot_load_times, plot_peak_memory
    from benchmarks.throughput_report import throughput_document, throughput_markdown

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if run.loads is not None:
        plots = {"loads.png": plot_load_times, "loads-memory.png": plot_peak_memory}
        for name, plot in plots.items():
            for folder in (directory, images):
                if folder is not None:
                    plot(run.loads, folder / name)
                    written.append(folder / name)
        markdown = loads_markdown(run.env, run.loads, run.sizes, list(plots))
        document = loads_document(run.env, run.loads, run.sizes)
        document["summary"] = summary(run)
        written += _write(directory / "loads.md", markdown + "\n")
        written += _write(directory / "loads.json", json.dumps(document, indent=2) + "\n")
    if run.throughput is not None:
        repeat = run.options.repeat
        figures = summary(run)
        markdown = throughput_markdown(run.env, run.throughput, repeat, run.limits, figures)
        document = throughput_document(run.env, run.throughput, repeat, run.limits, figures)
        written += _write(directory / "stores.md", markdown + "\n")
        written += _write(directory / "stores.json", json.dumps(document, indent=2) + "\n")
    return written


def _write(path: Path, text: str) -> list[Path]:
    path.write_text(text)
    return [path]
