"""The benchmark's seeded histories are what its reports say they are."""

from __future__ import annotations

import pytest

pytest.importorskip("eventsourcing", reason="needs the bench extra")

from benchmarks.domains import Bank
from benchmarks.engines import Stores
from benchmarks.loads import SNAPSHOT_LAG, EventsourcingLoads, SekibanLoads
from benchmarks.seeding import SINGLE_TAIL, commit_sizes
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
