"""`python -m benchmarks.projection_scale`: multi-projections at production scale.

    python -m benchmarks.projection_scale [--stores sqlite,postgres] [--events 1000000]
        [--records 100000] [--restarts 10000,100000,1000000] [--tail 300] [--quick]

On each store (a new SQLite file, a new PostgreSQL schema), seeded with `--records`
accounts of `--events / --records` events each (one commit per account):

- small state: `--events` events caught up into a projection of a few bytes (events per
  type); time, and peak resident memory above the process's baseline (goal: 100 MB);
- list: the built-in aggregate list of the `--records` accounts from the same events:
  catch-up, persist and restore time, peak resident memory during each, the state's
  size in memory (the resident memory building it left held) and stored (raw JSON
  lines, compressed). Persisted twice: in the projection store's row (the default for
  a state of its size) and out of line in a directory blob store. Goals: peak during
  persist <= 1.5x the state's size in memory (both above the baseline); restore <= the
  time catching up 1% of the history takes;
- restart: a new process opening the store and answering from a persisted checkpoint
  plus `--tail` events written after it, on stores of each `--restarts` size (the
  largest is the one above): the time should not grow with the history.

Every phase runs in a process of its own (`benchmarks.projection_phases`), so each peak
is that phase's. Full runs write `benchmarks/results/projection_scale.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.environment import environment, environment_markdown, load_average

PROG = "python -m benchmarks.projection_scale"
RESULTS = Path(__file__).parent / "results"
MB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


class Phases:
    """Runs phases of `benchmarks.projection_phases` on one store, one process each."""

    def __init__(self, url: str, blobs: Path) -> None:
        self.url, self.blobs = url, blobs

    def run(self, phase: str, *options: str) -> dict[str, Any]:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.projection_phases", phase, self.url, *options],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"phase {phase} {' '.join(options)} failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["process_seconds"] = time.perf_counter() - started
        return result

    def seed(self, accounts: int, per_account: int, writers: int) -> dict[str, Any]:
        return self.run(
            "seed",
            f"--accounts={accounts}",
            f"--events-per-account={per_account}",
            f"--writers={writers}",
        )

    def list_projection(self, restores: int) -> dict[str, Any]:
        blobs = f"--blobs={self.blobs}"
        built = self.run("build", "--projector=list", blobs)
        restored = self.median_of(restores, "restore", "--projector=list", blobs)
        out_of_line = self.run("persist", "--projector=list", blobs, "--out-of-line-above=0")
        restored_out_of_line = self.median_of(restores, "restore", "--projector=list", blobs)
        return {
            "build": built,
            "restore": restored,
            "persist_out_of_line": out_of_line,
            "restore_out_of_line": restored_out_of_line,
        }

    def median_of(self, repeat: int, phase: str, *options: str) -> dict[str, Any]:
        """The run of median time among `repeat` processes, with every run's time."""
        runs = sorted((self.run(phase, *options) for _ in range(repeat)), key=_seconds)
        return {**runs[len(runs) // 2], "all_seconds": [_seconds(r) for r in runs]}


def _seconds(run: dict[str, Any]) -> float:
    return float(run["seconds"])


@contextmanager
def fresh_store(kind: str, directory: Path) -> Iterator[str]:
    """The URL of a new, empty store of `kind`; a PostgreSQL schema is dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{uuid.uuid4().hex}.db'}"
        return
    from sekiban.stores import with_query

    schema = f"bench_scale_{uuid.uuid4().hex[:10]}"
    url = with_query(os.environ["SEKIBAN_POSTGRES_DSN"], schema=schema)
    try:
        yield url
    finally:
        _drop_schema(url)


def _drop_schema(url: str) -> None:
    import asyncio

    from sekiban.stores import open_store
    from sekiban.stores.postgres import PostgresEventStore

    async def drop() -> None:
        async with await open_store(url) as stores:
            assert isinstance(stores.events, PostgresEventStore)
            await stores.events.drop_schema()

    asyncio.run(drop())


def bench_store(kind: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    per_account = args.events // args.records
    writers = 1 if kind == "sqlite" else 8
    result: dict[str, Any] = {}
    with ExitStack() as stores:
        phases = Phases(stores.enter_context(fresh_store(kind, directory)), directory / "blobs")
        progress(f"{kind}: seeding {args.records * per_account:,} events")
        result["seed"] = phases.seed(args.records, per_account, writers)
        progress(f"{kind}: small-state catch-up")
        result["small_state"] = phases.run("build", "--projector=counts")
        progress(f"{kind}: list projection")
        result["list"] = phases.list_projection(args.restores)
        by_history: dict[int, Phases] = {}
        for history in sorted(args.restarts):
            progress(f"{kind}: a checkpoint with {history:,} events, then {args.tail} more")
            if history == args.records * per_account:
                by_history[history] = phases
            else:
                by_history[history] = Phases(
                    stores.enter_context(fresh_store(kind, directory)), phases.blobs
                )
                by_history[history].seed(history // per_account, per_account, writers)
                by_history[history].run("build", "--projector=counts")
            by_history[history].seed(max(1, args.tail // per_account), per_account, 1)
        progress(f"{kind}: restarts")
        result["restart"] = restarts(by_history, args.repeat)
    return result


def restarts(by_history: dict[int, Phases], repeat: int) -> dict[str, Any]:
    """`repeat` restarts of each store, taking the stores in turn (so a change in the
    machine's load falls on every size alike)."""
    runs: dict[int, list[dict[str, Any]]] = {history: [] for history in by_history}
    for _ in range(repeat):
        for history, phases in by_history.items():
            runs[history].append(phases.run("restart", "--projector=counts"))
    return {
        str(history): {
            "events_after_checkpoint": made[0]["events_after_checkpoint"],
            "runs": made,
            "median_seconds": statistics.median(r["seconds"] for r in made),
            "median_process_seconds": statistics.median(r["process_seconds"] for r in made),
        }
        for history, made in runs.items()
    }


def goals(stores: dict[str, Any]) -> dict[str, Any]:
    """Each goal per store: the figure, the bound, met or not."""
    checks: dict[str, Any] = {}
    for kind, r in stores.items():
        small = r["small_state"]["peak_rss_above_baseline"]
        built = r["list"]["build"]
        one_percent = built["seconds"] / 100
        restarts = [r["restart"][h]["median_seconds"] for h in sorted(r["restart"], key=int)]
        persists = {
            "inline": built,
            "out_of_line": r["list"]["persist_out_of_line"],
        }
        checks[kind] = {
            "catch_up_small_state_peak_mb": _goal(small / MB, 100),
            **{
                f"persist_{where}_peak_over_state": _goal(
                    p["persist_peak_rss_above_baseline"] / p["state_rss"], 1.5
                )
                for where, p in persists.items()
            },
            **{
                f"restore_{where}_seconds_vs_1pct_catch_up": _goal(
                    r["list"][key]["seconds"], one_percent
                )
                for where, key in (("inline", "restore"), ("out_of_line", "restore_out_of_line"))
            },
            "restart_largest_over_smallest": _goal(restarts[-1] / restarts[0], 1.5),
        }
    return checks


def _goal(value: float, bound: float) -> dict[str, Any]:
    return {"value": round(value, 3), "bound": round(bound, 3), "met": value <= bound}


def markdown(document: dict[str, Any]) -> str:
    env, stores = document["environment"], document["stores"]
    lines = [
        "# Projections at scale",
        "",
        *environment_markdown(env),
        "",
        "The machine was shared with other work (2 cores): catch-up and persist times are",
        "single runs, restores and restarts the median of several processes; all move by",
        "tens of percent from run to run.",
        "Memory is resident memory (VmHWM, reset per phase, and a 5 ms sampler), above the",
        "phase process's baseline (code imported, store open).",
        "",
        "| store | events | small-state catch-up | peak RSS | list catch-up | peak RSS | "
        "state in memory | raw / stored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, r in stores.items():
        small, built = r["small_state"], r["list"]["build"]
        lines.append(
            f"| {kind} | {small['applied']:,} | {small['seconds']:.1f} s "
            f"({small['applied'] / small['seconds']:,.0f}/s) | "
            f"{_mb(small['peak_rss_above_baseline'])} | {built['seconds']:.1f} s "
            f"({built['applied'] / built['seconds']:,.0f}/s) | "
            f"{_mb(built['peak_rss_above_baseline'])} | {_mb(built['state_rss'])} | "
            f"{_mb(built['raw_bytes'])} / {_mb(built['stored_bytes'])} |"
        )
    lines += [
        "",
        "The list projection's state saved and restored (state in memory: RSS the state",
        "holds; peak: above the baseline, the state included):",
        "",
        "| store | where | persist | peak RSS (x state) | restore | peak RSS | 1% of catch-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind, r in stores.items():
        listed = r["list"]
        one_percent = listed["build"]["seconds"] / 100
        for where, saved, restored in (
            ("row", listed["build"], listed["restore"]),
            ("blob", listed["persist_out_of_line"], listed["restore_out_of_line"]),
        ):
            ratio = saved["persist_peak_rss_above_baseline"] / saved["state_rss"]
            lines.append(
                f"| {kind} | {where} | {saved['persist_seconds']:.2f} s | "
                f"{_mb(saved['persist_peak_rss_above_baseline'])} ({ratio:.2f}x of "
                f"{_mb(saved['state_rss'])}) | {restored['seconds']:.2f} s | "
                f"{_mb(restored['peak_rss_above_baseline'])} | {one_percent:.2f} s |"
            )
    lines += [
        "",
        "Restart from a checkpoint (a new process: open the store, restore, catch up the",
        "events after the checkpoint, answer; median of the processes):",
        "",
        "| store | events in store | after checkpoint | restart | whole process |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, r in stores.items():
        for history, run in sorted(r["restart"].items(), key=lambda item: int(item[0])):
            lines.append(
                f"| {kind} | {int(history):,} | {run['events_after_checkpoint']} | "
                f"{run['median_seconds'] * 1000:.0f} ms | "
                f"{run['median_process_seconds'] * 1000:.0f} ms |"
            )
    lines += ["", "Goals:", ""]
    for kind, checks in document["goals"].items():
        for name, goal in checks.items():
            mark = "met" if goal["met"] else "**missed**"
            lines.append(f"- {kind} `{name}`: {goal['value']} (bound {goal['bound']}): {mark}")
    return "\n".join(lines) + "\n"


def _mb(size: float) -> str:
    return f"{size / MB:.1f} MB"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--stores", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--restarts", default="10000,100000,1000000", help="store sizes to restart")
    p.add_argument("--tail", type=int, default=300, help="events after the checkpoint")
    p.add_argument("--repeat", type=int, default=5, help="restarts per store size")
    p.add_argument("--restores", type=int, default=3, help="restores of the list (median)")
    p.add_argument("--quick", action="store_true", help="20,000 events on SQLite, nothing saved")
    p.add_argument("--json", dest="json_output", action="store_true", help="print the JSON")
    p.add_argument(
        "--markdown-from",
        type=Path,
        help="only write the Markdown again from a results JSON file (nothing is run)",
    )
    p.add_argument(
        "--save",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write benchmarks/results/projection_scale.* (default: unless --quick)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.markdown_from is not None:
        saved = json.loads(args.markdown_from.read_text())
        args.markdown_from.with_suffix(".md").write_text(markdown(saved))
        return
    if args.quick:
        args.stores, args.events, args.records = "sqlite", 20_000, 2_000
        args.restarts, args.tail, args.repeat, args.restores = "1000,5000,20000", 30, 2, 1
    kinds = args.stores.split(",")
    if "postgres" in kinds and not os.environ.get("SEKIBAN_POSTGRES_DSN"):
        raise SystemExit('SEKIBAN_POSTGRES_DSN is not set: eval "$(scripts/services.sh env)"')
    args.restarts = [int(n) for n in args.restarts.split(",")]
    if args.events not in args.restarts:
        args.restarts.append(args.events)
    document: dict[str, Any] = {"environment": environment(" ".join([PROG, *argv]))}
    document["settings"] = {
        k: getattr(args, k) for k in ("events", "records", "restarts", "tail", "repeat", "restores")
    }
    with tempfile.TemporaryDirectory(prefix="projection-scale-") as directory:
        document["stores"] = {kind: bench_store(kind, args, Path(directory)) for kind in kinds}
    document["environment"]["load_average"]["after"] = load_average()
    document["goals"] = goals(document["stores"])
    text = markdown(document)
    if args.save if args.save is not None else not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "projection_scale.json").write_text(json.dumps(document, indent=2) + "\n")
        (RESULTS / "projection_scale.md").write_text(text)
    if args.json_output:
        print(json.dumps(document))
    else:
        print(text)


if __name__ == "__main__":
    main()
