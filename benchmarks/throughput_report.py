"""The throughput benchmark's results as Markdown and JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from benchmarks.domains import SNAPSHOT_EVERY
from benchmarks.environment import environment_markdown
from benchmarks.limits import Limit
from benchmarks.throughput import LEVELS, Result, ratios


def throughput_document(
    env: dict[str, Any],
    results: list[Result],
    repeat: int,
    limits: list[Limit] | None = None,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    rows = [{**asdict(r), "events_per_second": round(r.events_per_second)} for r in results]
    table = [
        {"engine": e, "workload": w, "level": lvl, "sekiban_over_eventsourcing": round(x, 2)}
        for (e, w, lvl), x in ratios(results).items()
    ]
    document = {"environment": env, "repeat": repeat, "results": rows, "ratios": table}
    if limits:
        document["raw_driver_limit"] = [
            {**asdict(x), "events_per_second": round(x.events_per_second)} for x in limits
        ]
    if summary:
        keys = ("like_for_like", "of_limit", "peer_ceiling", "durability")
        document |= {k: summary[k] for k in keys if k in summary}
    return document


def limits_markdown(limits: list[Limit], summary: dict[str, Any]) -> list[str]:
    """The raw-driver limit and each figure beside it: of limit and versus the peer."""
    if not limits:
        return []
    lines = [
        "## Against the raw-driver limit",
        "",
        "The limit: sqlite3 / asyncpg writing sekiban's own rows, built before the clock "
        "starts, one INSERT per command in its own transaction; replay: the stream's rows "
        "fetched (SQLite: and each commit's JSON array parsed). Same durability as both "
        "frameworks (`benchmarks/limits.py`). Of limit = sekiban's rate / the driver's; "
        "vs peer = sekiban / eventsourcing (snapshot load: their time / ours). "
        "Peer ceiling = vs peer / of limit: the ratio sekiban would have at 100% of the "
        "limit, so a target above it cannot be reached by making sekiban faster.",
        "",
        "| store | durability | figure | raw driver (events/s) | of limit | vs peer "
        "| peer ceiling |",
        "|---|---|---|--:|--:|--:|--:|",
    ]
    of_limit, peer = summary.get("of_limit", {}), summary.get("like_for_like", {})
    ceiling = summary.get("peer_ceiling", {})
    for x in limits:
        key = x.engine.replace("-", "_")
        share = of_limit.get(x.workload, {}).get(key)
        versus = peer.get(x.workload, {}).get(key)
        most = ceiling.get(x.workload, {}).get(key)
        lines.append(
            f"| {x.engine} | {x.durability} | {x.workload} | {x.events_per_second:,.0f} | "
            + (f"{share:.2f}" if share is not None else "")
            + " | "
            + (f"{versus:.2f}x" if versus is not None else "")
            + " | "
            + (f"{most:.2f}x" if most is not None else "")
            + " |"
        )
    return [*lines, ""]


def throughput_markdown(
    env: dict[str, Any],
    results: list[Result],
    repeat: int,
    limits: list[Limit] | None = None,
    summary: dict[str, Any] | None = None,
) -> str:
    eps = {(r.engine, r.workload, r.level, r.framework): r.events_per_second for r in results}
    ratio = ratios(results)
    levels = [lvl for lvl in LEVELS if any(r.level == lvl for r in results)]
    lines = [
        "# Event store throughput: sekiban vs eventsourcing",
        "",
        *environment_markdown(env, list(dict.fromkeys(r.engine for r in results))),
        "",
        f"Median of {repeat} runs, each on a fresh database after an untimed warm-up. "
        "Figures are events/s; ratio = sekiban / eventsourcing (target: >= 2).",
        "",
        "Store level: sekiban `decide`, `EventStore.append` of the `Serializer.to_stored` batch "
        "and `projector.fold` (aggregate kept in memory), replay = `EventReplayOptimizer.load`; "
        "eventsourcing `Application.save` of an aggregate kept in memory, replay = "
        "`repository.get`. Executor level: `SekibanExecutor.command` vs an eventsourcing "
        f"application command (`repository.get`, trigger, `save`), both snapshotting every "
        f"{SNAPSHOT_EVERY} events; replay = `load_aggregate` vs `repository.get`, no snapshots.",
        "",
        "Where the time goes (profiles, and what bounds the SQLite ratios): "
        "[stores-profile.md](stores-profile.md), [profile.md](profile.md).",
        "",
        *limits_markdown(limits or [], summary or {}),
    ]
    headers = {
        "store": ("sekiban store", "eventsourcing"),
        "executor": ("sekiban executor", "eventsourcing app"),
    }
    for engine in dict.fromkeys(r.engine for r in results):
        header = ["workload"]
        for level in levels:
            header += [*headers[level], "ratio"]
        lines += [
            f"## {engine}",
            "",
            "| " + " | ".join(header) + " |",
            "|---|" + "--:|" * (len(header) - 1),
        ]
        for workload in dict.fromkeys(r.workload for r in results if r.engine == engine):
            cells = [workload]
            for level in levels:
                cells += [
                    f"{eps[(engine, workload, level, 'sekiban')]:,.0f}",
                    f"{eps[(engine, workload, level, 'eventsourcing')]:,.0f}",
                    f"{ratio[(engine, workload, level)]:.2f}x",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        runs = [r for r in results if r.engine == engine]
        slowest = max(runs, key=_spread)
        lines += [
            "",
            f"Slowest/fastest repetition: median {statistics.median(map(_spread, runs)):.2f}, "
            f"worst {_spread(slowest):.2f} ({slowest.workload}, {slowest.level}, "
            f"{slowest.framework}).",
            "",
        ]
    return "\n".join(lines)


def _spread(result: Result) -> float:
    return max(result.seconds) / min(result.seconds)
