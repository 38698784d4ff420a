"""The "done when" of schema evolution: `sekiban events verify` finds one planted bad
event among 100,000 in a SQLite store and exits non-zero."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from sekiban import PartitionKeys
from sekiban.cli import app
from sekiban.stores import open_store
from tests.support import stored_events

STREAMS, EVENTS_PER_STREAM = 1000, 100


async def write_store(path: Path, bad_stream: int, bad_version: int) -> PartitionKeys:
    """1,000 bank accounts of 100 events, appended a stream at a time, one deposit of
    which has a payload the domain refuses; the keys of that stream."""
    bad_keys = None
    async with await open_store(f"sqlite:///{path}") as stores:
        for n in range(STREAMS):
            keys = PartitionKeys.generate("account")
            events = [
                *stored_events(keys, 1, 1, event_type="AccountOpened", payload='{"owner":"o"}'),
                *stored_events(keys, 2, EVENTS_PER_STREAM - 1),
            ]
            if n == bad_stream:
                bad_keys = keys
                events[bad_version - 1] = stored_events(
                    keys, bad_version, 1, payload='{"amount": -3}'
                )[0]
            await stores.events.append(events, 0)
    assert bad_keys is not None
    return bad_keys


def test_verify_finds_one_bad_event_in_a_100k_event_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "large.db"
    bad_keys = asyncio.run(write_store(path, bad_stream=617, bad_version=58))
    result = CliRunner().invoke(
        app,
        [
            "events",
            "verify",
            "--store",
            f"sqlite:///{path}",
            "--domain",
            "examples.bank:bank_domain",
            "--json",
        ],
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert (report["events"], report["streams"]) == (STREAMS * EVENTS_PER_STREAM, STREAMS)
    assert report["replayed_streams"] == STREAMS - 1
    assert [(p["kind"], p["partition_keys"], p["version"]) for p in report["problems"]] == [
        ("undecodable", str(bad_keys), 58)
    ]
