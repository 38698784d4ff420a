"""Event store throughput: sekiban against the `eventsourcing` package, same engine, same run.

    python -m benchmarks.stores [--quick] [--stores sqlite,sqlite-full,postgres] [--json]

A thin wrapper kept for existing scripts: the benchmark lives in
`benchmarks.throughput` (workloads, levels and method are described there) and
`python -m benchmarks --suite throughput` runs the same thing. Full runs write
`benchmarks/results/stores.{md,json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.progress import SilentProgress
from benchmarks.suites import BenchOptions, run_bench, write_results
from benchmarks.throughput_report import throughput_document, throughput_markdown

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stores", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, results not saved")
    parser.add_argument("--stores", default="sqlite,sqlite-full,postgres")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    changes: dict[str, Any] = {
        "suites": ("throughput",),
        "stores": tuple(args.stores.split(",")),
        "command": " ".join(["python -m benchmarks.stores", *argv]),
    }
    if args.repeat:
        changes["repeat"] = args.repeat
    options = BenchOptions.for_quick(**changes) if args.quick else BenchOptions(**changes)
    run = asyncio.run(run_bench(options, SilentProgress()))
    for name, reason in run.skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    assert run.throughput is not None
    if args.json:
        print(json.dumps(throughput_document(run.env, run.throughput, options.repeat), indent=2))
    else:
        print(throughput_markdown(run.env, run.throughput, options.repeat))
    if not args.quick:
        write_results(run, RESULTS)


if __name__ == "__main__":
    main()
