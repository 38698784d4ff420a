"""`sekiban events verify` on SQLite files: exit status, output, and nothing written."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sekiban import PartitionKeys
from sekiban.cli import app
from sekiban.stores import open_store
from tests.support import bank_account_with_snapshot, stored_events

BANK = "examples.bank:bank_domain"


def bank_file(path: Path, accounts: int = 2) -> list[PartitionKeys]:
    """A SQLite file of `accounts` bank accounts of 6 events, snapshotted every 4."""

    async def write() -> list[PartitionKeys]:
        async with await open_store(f"sqlite:///{path}") as stores:
            return [
                (
                    await bank_account_with_snapshot(
                        stores.events, stores.snapshots, events=6, every=4
                    )
                )[1]
                for _ in range(accounts)
            ]

    return asyncio.run(write())


def verify(path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["events", "verify", "--store", f"sqlite:///{path}", "--domain", BANK, *args]
    )
    return result.exit_code, result.output


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return list(connection.iterdump())


def test_a_clean_store_exits_0_and_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    bank_file(path)
    before = dump(path)
    code, output = verify(path)
    assert code == 0, output
    assert "12 events in 2 streams" in output and "no problems found" in output
    assert dump(path) == before


def test_a_version_gap_exits_1_and_names_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    keys, _ = bank_file(path)
    with sqlite3.connect(path) as connection:
        deleted = connection.execute(
            "DELETE FROM commits WHERE aggregate_id = ? AND first_version = 3",
            (str(keys.aggregate_id),),
        ).rowcount
    assert deleted == 1
    code, output = verify(path, "--json")
    assert code == 1
    report = json.loads(output)
    assert report["counts"] == {"version-gap": 1}
    [problem] = report["problems"]
    assert (problem["partition_keys"], problem["version"]) == (str(keys), 4)
    assert "version 2 is followed by version 4" in problem["detail"]


def test_a_bad_event_in_another_stream_is_outside_a_stream_check(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    good, _ = bank_file(path)
    bad = PartitionKeys.generate("account")

    async def plant() -> None:
        async with await open_store(f"sqlite:///{path}") as stores:
            await stores.events.append(stored_events(bad, 1, 1, payload="{}"), 0)

    asyncio.run(plant())
    assert verify(path, "--stream", str(good))[0] == 0
    code, output = verify(path, "--stream", str(bad))
    assert code == 1 and "undecodable" in output


def test_bad_arguments_are_refused_before_anything_is_opened(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    code, output = verify(missing)
    assert code == 2 and "no SQLite file" in output
    assert not missing.exists()
    path = tmp_path / "events.db"
    bank_file(path, accounts=1)
    assert "expected module:attribute" in verify(path, "--domain", "examples.bank")[1]
    assert "cannot load" in verify(path, "--domain", "examples.bank:nothing")[1]
    assert "not a DomainTypes" in verify(path, "--domain", "examples.bank:AccountOpened")[1]
    assert "partition keys" in verify(path, "--stream", "nope")[1]


def test_verify_runs_as_a_command(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    bank_file(path, accounts=1)
    command = [sys.executable, "-m", "sekiban.cli", "events", "verify", "--domain", BANK]
    env = {**os.environ, "SEKIBAN_STORE_URL": f"sqlite:///{path}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE commits SET events = replace(events, 'ann', '')")
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["counts"] == {"undecodable": 1}
