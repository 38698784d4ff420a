"""`python -m benchmarks.insert_floor`: what sekiban's checks cost inside SQLite's INSERT.

    python -m benchmarks.insert_floor [--commands 20000] [--synchronous NORMAL] [--repeat 3]

The raw-driver limit of `benchmarks.limits` commits a prebuilt row with a plain INSERT.
sekiban's append commits the same row with its own INSERT (`stores/sqlite/appending.py`),
which also takes the next position, checks the expected version and writes the command
id under its unique index (the exactly-once guarantee). This times, with sqlite3 alone
and no other Python, one INSERT and COMMIT per command of one event, round robin over
100 streams, in four forms: plain; plain with the command id; sekiban's conditional
INSERT without a command id; sekiban's INSERT as it runs. The last over the first is
the most of the limit any framework keeping these checks can reach, before any Python.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.engines import SqliteEngine
from benchmarks.limits import _SQLITE_INSERT, _sqlite_connection, _sqlite_rows, stored_commits
from sekiban.stores.sqlite.appending import _APPEND
from sekiban.stores.sqlite.database import CHECKPOINT_EVERY

PROG = "python -m benchmarks.insert_floor"
STREAMS = 100
FORMS = ("plain", "plain, command id", "checked, no command id", "sekiban's INSERT")
_PLAIN_WITH_ID = _SQLITE_INSERT.replace("?, NULL)", "?, ?)")


def statement(form: str, row: tuple[Any, ...], command_id: str) -> tuple[str, tuple[object, ...]]:
    _, root, group, aggregate_id, first, last, events = row
    if form == "plain":
        return _SQLITE_INSERT, row
    if form == "plain, command id":
        return _PLAIN_WITH_ID, (*row, command_id)
    stream = (root, group, aggregate_id)
    command = None if form == "checked, no command id" else command_id
    # sekiban's parameters: position offset, columns, command id, stream, expected version.
    return _APPEND, (last - first + 1, *stream, first, last, events, command, *stream, first - 1)


def seconds_per_command(
    path: str, synchronous: str, form: str, rows: list[tuple[object, ...]]
) -> float:
    connection = _sqlite_connection(path, synchronous)
    try:
        spent = 0.0
        for i, row in enumerate(rows, start=1):
            sql, parameters = statement(form, row, str(uuid.uuid4()))
            started = time.perf_counter()
            written = connection.execute(sql, parameters).rowcount
            spent += time.perf_counter() - started
            if written != 1:
                raise SystemExit(f"{form}: row {i} was not written")
            if i % CHECKPOINT_EVERY == 0:  # untimed, as in the limit
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return spent / len(rows)
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--commands", type=int, default=20_000)
    p.add_argument("--synchronous", default="NORMAL", choices=("NORMAL", "FULL"))
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rows = _sqlite_rows(stored_commits(args.commands, 1, STREAMS))
    samples: dict[str, list[float]] = {form: [] for form in FORMS}
    with tempfile.TemporaryDirectory() as directory:
        engine = SqliteEngine("sqlite", Path(directory), args.synchronous)
        for _ in range(args.repeat):
            for form in FORMS:  # in turn, so a change of load touches every form
                samples[form].append(
                    seconds_per_command(engine._fresh_path(), args.synchronous, form, rows)
                )
    plain = statistics.median(samples["plain"])
    print(
        f"{args.commands:,} one-event commands over {STREAMS} streams, WAL, "
        f"synchronous={args.synchronous}; median of {args.repeat}"
    )
    for form in FORMS:
        cost = statistics.median(samples[form])
        print(f"  {form:24s} {cost * 1e6:6.1f} us per command   {plain / cost:5.2f} of the limit")


if __name__ == "__main__":
    main()
