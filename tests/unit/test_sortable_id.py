import threading
from datetime import UTC, datetime, timedelta

import pytest

from sekiban import InvalidSortableUniqueIdError, SortableUniqueId
from sekiban.core import sortable_id


@pytest.fixture(autouse=True)
def restore_the_id_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids made for a fixed or future moment move the process's last tick there; without
    this every later id in the test run would be dated 2030 (and the Cosmos DB store's
    read_all, which skips ids newer than now, would see nothing)."""
    monkeypatch.setattr(sortable_id, "_last_ticks", sortable_id._last_ticks)


def test_ids_strictly_increase_even_within_one_clock_tick() -> None:
    fixed = 1_700_000_000_000_000_000
    ids = [SortableUniqueId.generate(now_ns=fixed) for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_from_many_threads_are_unique_and_each_thread_sees_increasing_ids() -> None:
    results: list[list[str]] = []

    def make() -> None:
        results.append([SortableUniqueId.generate() for _ in range(2000)])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == sorted(r) for r in results)
    assert len({i for r in results for i in r}) == 8000


def test_later_clock_gives_larger_id_and_timestamp_round_trips() -> None:
    moment = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    ns = int(moment.timestamp()) * 10**9 + moment.microsecond * 1000
    made = SortableUniqueId.generate(now_ns=ns)
    assert made.timestamp >= moment and made.timestamp - moment < timedelta(seconds=1)
    assert SortableUniqueId.min_for(moment) <= made
    assert SortableUniqueId.min_for(moment + timedelta(days=1)) > made


def test_parse_accepts_valid_and_rejects_invalid() -> None:
    made = SortableUniqueId.generate()
    assert SortableUniqueId.parse(str(made)) == made
    for bad in ["", "123", "x" * 30, str(made) + "1", str(made)[:-1] + "a"]:
        with pytest.raises(InvalidSortableUniqueIdError):
            SortableUniqueId.parse(bad)
