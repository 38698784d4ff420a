"""The benchmark's seeded histories are what its reports say they are."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("eventsourcing", reason="needs the bench extra")

from benchmarks import insert_floor, restore_floor
from benchmarks.domains import Bank
from benchmarks.engines import Stores
from benchmarks.insert_floor import statement
from benchmarks.limits import Limit, _sqlite_connection, _sqlite_rows, stored_commits
from benchmarks.loads import SNAPSHOT_LAG, EventsourcingLoads, SekibanLoads
from benchmarks.seeding import SINGLE_TAIL, commit_sizes
from benchmarks.suites import peer_ceilings
from benchmarks.throughput_report import limits_markdown
from sekiban.stores import InMemoryEventStore, InMemorySnapshotStore


@pytest.mark.parametrize("history", [1, 5, 10, 11, 999, 2_345])
def test_commit_sizes_cover_the_history_and_end_in_single_commits(history: int) -> None:
    sizes = commit_sizes(history, chunk=1000)
    assert sum(sizes) == history
    assert max(sizes) <= 1000
    assert sizes[-min(history, SINGLE_TAIL) :] == [1] * min(history, SINGLE_TAIL)


@pytest.mark.parametrize("lag", [SNAPSHOT_LAG, 0])
@pytest.mark.parametrize("history", [10, 1_234])
async def test_sekiban_loads_check_the_snapshot_and_the_replay(history: int, lag: int) -> None:
    subject = SekibanLoads(Stores(InMemoryEventStore(), InMemorySnapshotStore()))
    account = await subject.seed(history, lag)
    await subject.loader(account, history, False, lag)()
    await subject.loader(account, history, True, lag)()
    snapshot = await subject.stores.snapshots.get(account, "account")
    assert snapshot is not None and snapshot.version == history - lag
    with pytest.raises(AssertionError):
        await subject.loader(account, history + 1, False, lag)()
    with pytest.raises(AssertionError):
        await subject.loader(account, history, True, lag + 1)()


@pytest.mark.parametrize("lag", [SNAPSHOT_LAG, 0])
@pytest.mark.parametrize("history", [10, 1_234])
async def test_eventsourcing_loads_use_a_snapshot_only_when_asked(history: int, lag: int) -> None:
    app = Bank(env={"PERSISTENCE_MODULE": "eventsourcing.popo", "IS_SNAPSHOTTING_ENABLED": "y"})
    subject = EventsourcingLoads(app)
    account = await subject.seed(history, lag)
    await subject.loader(account, history, False, lag)()
    await subject.loader(account, history, True, lag)()
    assert app.snapshots is not None
    [snapshot] = app.snapshots.get(account)
    assert snapshot.originator_version == history - lag
    assert subject.replay.snapshot_store is None


def test_the_insert_floor_times_the_checks_sekiban_runs(tmp_path: Path) -> None:
    # The form named after sekiban's INSERT must refuse what the store refuses: a stale
    # expected version (nothing written) and a command id already in the stream.
    connection = _sqlite_connection(str(tmp_path / "floor.db"), "NORMAL")
    first, second = _sqlite_rows(stored_commits(2, 1, 1))
    sql, parameters = statement("sekiban's INSERT", first, "command-1")
    assert connection.execute(sql, parameters).rowcount == 1
    assert connection.execute(sql, parameters).rowcount == 0  # version 0 is gone
    sql, parameters = statement("sekiban's INSERT", second, "command-1")
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(sql, parameters)
    sql, parameters = statement("sekiban's INSERT", second, "command-2")
    assert connection.execute(sql, parameters).rowcount == 1
    versions = connection.execute("SELECT last_version, command_id FROM commits").fetchall()
    assert versions == [(1, "command-1"), (2, "command-2")]


def test_the_floor_benchmarks_run_every_form(capsys: pytest.CaptureFixture[str]) -> None:
    insert_floor.main(["--commands", "200", "--repeat", "1"])
    restore_floor.main(["--records", "300", "--repeat", "1"])
    out = capsys.readouterr().out
    for form in (*insert_floor.FORMS, "collector paused", "floor:"):
        assert form in out


def test_peer_ceiling_is_the_ratio_at_the_whole_limit() -> None:
    peer = {"append_1": {"postgres": 2.04, "sqlite": 1.2}, "snapshot_load": {"sqlite": 9.0}}
    of_limit = {"append_1": {"postgres": 0.72, "sqlite": 0.0}}
    ceilings = peer_ceilings(peer, of_limit)
    # 2.04x at 72% of the limit: at 100% it would be 2.04 / 0.72 = 2.83x. A zero share
    # and a figure without a limit (snapshot load) have no ceiling.
    assert ceilings == {"append_1": {"postgres": pytest.approx(2.04 / 0.72)}}


def test_limits_table_shows_the_peer_ceiling_beside_the_ratio() -> None:
    limit = Limit("postgres", "append_1", 300, "synchronous_commit=on", [0.1])
    summary = {
        "of_limit": {"append_1": {"postgres": 0.5}},
        "like_for_like": {"append_1": {"postgres": 1.5}},
        "peer_ceiling": {"append_1": {"postgres": 3.0}},
    }
    rows = [line for line in limits_markdown([limit], summary) if line.startswith("| postgres")]
    expected = "| postgres | synchronous_commit=on | append_1 | 3,000 | 0.50 | 1.50x | 3.00x |"
    assert rows == [expected]
