"""`python -m benchmarks`: loads (snapshot vs replay), snapshot sizes and throughput
against the `eventsourcing` package. Run it from the repository root.

Needs the `bench` extra. Progress goes to stderr; --json prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PROG = "python -m benchmarks"


def parser() -> argparse.ArgumentParser:
    """The options `sekiban bench` had, with the same names and defaults."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument(
        "--suite", default="loads,throughput", help="comma-separated suites: loads, throughput"
    )
    p.add_argument(
        "--stores",
        help="comma-separated: memory, sqlite, sqlite-full, postgres, cosmos "
        "(default: all; --quick: sqlite,sqlite-full,postgres, postgres only when "
        "reachable). Stores without a server are skipped.",
    )
    p.add_argument("--histories", help="history lengths, e.g. 10,100,1000")
    p.add_argument(
        "--quick",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="small sizes on SQLite (and PostgreSQL), within a minute; saves nothing",
    )
    p.add_argument(
        "--json",
        dest="json_output",
        action="store_true",
        help="print one JSON object on stdout (quick: the summary)",
    )
    p.add_argument("--repeat", type=int, help="throughput repetitions (default 5, quick 3)")
    p.add_argument(
        "--output", type=Path, default=Path("benchmarks/results"), help="where results are written"
    )
    p.add_argument(
        "--save",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write results to --output (default: unless --quick)",
    )
    p.add_argument("--images", type=Path, help="also write the plots here (e.g. docs/img)")
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cli = parser()
    args = cli.parse_args(argv)
    # Checked before importing the suites, which import eventsourcing at the top.
    if importlib.util.find_spec("eventsourcing") is None:
        cli.error("the eventsourcing package is missing: pip install 'sekiban[bench]'")
    from benchmarks.progress import ProgressBars
    from benchmarks.suites import BenchOptions, run_bench, summary, write_results

    changes: dict[str, Any] = {
        "suites": tuple(_names(args.suite)),
        "command": " ".join([PROG, *argv]),
    }
    if args.stores is not None:
        changes["stores"] = tuple(_names(args.stores))
    if args.histories is not None:
        changes["histories"] = tuple(int(h) for h in _names(args.histories))
    if args.repeat is not None:
        changes["repeat"] = args.repeat
    options = BenchOptions.for_quick(**changes) if args.quick else BenchOptions(**changes)
    try:
        with ProgressBars(Console(stderr=True)) as progress:
            run = asyncio.run(run_bench(options, progress))
    except ValueError as error:
        cli.error(str(error))
    save = not args.quick if args.save is None else args.save
    written = write_results(run, args.output, args.images) if save else []
    figures = summary(run)
    if args.json_output:
        if args.quick:
            print(json.dumps(figures))
        else:
            print(json.dumps({"summary": figures, "files": [str(p) for p in written]}))
        return
    console = Console()
    table = Table("figure (sekiban / eventsourcing on SQLite unless named)", "value")
    for name, value in figures.items():
        table.add_row(name, f"{value:,.2f}" if isinstance(value, float) else str(value))
    console.print(table)
    if run.loads is not None:
        from benchmarks.loads_report import load_targets

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
    main()
