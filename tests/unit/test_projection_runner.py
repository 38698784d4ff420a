"""The subscription runner on the in-memory store: continuous catch-up, graceful stop,
checkpoints, projector errors, store faults and backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from examples.bank import AccountList
from sekiban import ConfigurationError, PartitionKeys, StoreConnectionError, StoredEvent
from sekiban.projections import (
    InMemoryProjectionStore,
    ProjectionOptions,
    ProjectionRunner,
    Projections,
)
from sekiban.projections.status import measure_lag
from sekiban.stores import EventStore, InMemoryEventStore
from tests.runner_domain import (
    GROUP,
    OTHER_GROUP,
    AppliedEvents,
    Picky,
    all_ids,
    append_deposits,
    deposits,
    domain,
)
from tests.support import stored_events

FAST = {"poll_interval": timedelta(milliseconds=5), "max_backoff": timedelta(milliseconds=50)}


@pytest.fixture(autouse=True)
def _no_failure() -> Any:
    yield
    Picky.fail_on = None


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    """Wait until `check()` holds (a generous timeout, no timing asserted)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


class Running:
    """A runner started in a task; `stop()` stops it and awaits the task."""

    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner
        self.task = asyncio.create_task(runner.run())

    async def stop(self) -> None:
        self.runner.stop()
        await asyncio.wait_for(self.task, 30)

    async def status(self, name: str) -> Any:
        (found,) = [s for s in await self.runner.status() if s.name == name]
        return found


def projections(
    store: EventStore, states: InMemoryProjectionStore | None = None, persist_every: int = 10_000
) -> Projections:
    return Projections(
        domain(),
        store,
        states if states is not None else InMemoryProjectionStore(),
        options=ProjectionOptions(persist_every=persist_every),
    )


async def test_the_runner_follows_appends_and_stops_with_its_checkpoint_at_the_head() -> None:
    store, states = InMemoryEventStore(), InMemoryProjectionStore()
    running = Running(ProjectionRunner(projections(store, states), [AppliedEvents], **FAST))
    await append_deposits(store, 3, 4)
    manager = running.runner.projections
    await eventually(
        lambda: _async(manager.position(AppliedEvents) == 12 and not manager.unsaved(AppliedEvents))
    )
    await append_deposits(store, 2, 3)
    await eventually(lambda: _async(manager.position(AppliedEvents) == 18))
    await running.stop()
    record = await states.get(AppliedEvents.name)
    assert record is not None and record.position == 18
    state = (await manager.projection(AppliedEvents)).state
    assert state == await all_ids(store)


async def test_idle_the_checkpoint_is_saved_without_a_stop() -> None:
    store, states = InMemoryEventStore(), InMemoryProjectionStore()
    runner = ProjectionRunner(
        projections(store, states), [AppliedEvents], checkpoint_interval=timedelta(0), **FAST
    )
    running = Running(runner)
    await append_deposits(store, 1, 5)

    async def saved_at_head() -> bool:
        record = await states.get(AppliedEvents.name)
        return record is not None and record.position == 5

    await eventually(saved_at_head)
    (status,) = await runner.status()
    assert (status.position, status.checkpoint, status.lag_events) == (5, 5, 0)
    await running.stop()


class StopsAfterFirstBatch:
    """An event store that asks the runner to stop while it reads a batch."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.runner: ProjectionRunner | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def read_all(self, after: int = 0, batch_size: int = 1000) -> AsyncIterator[Any]:
        async for batch in self.store.read_all(after, batch_size):
            assert self.runner is not None
            self.runner.stop()
            yield batch


async def test_stop_finishes_the_current_batch_saves_and_returns() -> None:
    store, states = InMemoryEventStore(), InMemoryProjectionStore()
    await append_deposits(store, 1, 2500)
    stopping = StopsAfterFirstBatch(store)
    runner = ProjectionRunner(projections(stopping, states), [AppliedEvents], **FAST)  # type: ignore[arg-type]
    stopping.runner = runner
    await asyncio.wait_for(runner.run(), 30)
    record = await states.get(AppliedEvents.name)
    assert record is not None and record.position == 1000  # one batch, no more
    restarted = projections(store, states)
    state = (await restarted.catch_up(AppliedEvents)).state
    assert state == await all_ids(store)


async def test_a_long_catch_up_saves_every_persist_every_events() -> None:
    store, states = InMemoryEventStore(), InMemoryProjectionStore()
    await append_deposits(store, 1, 2500)
    saved: list[int] = []
    save = states.save

    async def recording_save(record: Any) -> bool:
        saved.append(record.position)
        return await save(record)

    states.save = recording_save  # type: ignore[method-assign]
    manager = projections(store, states, persist_every=1000)
    await manager.catch_up(AppliedEvents)
    assert saved == [1000, 2000]


async def test_a_projector_error_is_recorded_and_retried_while_the_others_keep_going() -> None:
    store, states = InMemoryEventStore(), InMemoryProjectionStore()
    keys = PartitionKeys.generate(GROUP)
    await store.append(deposits(keys, 1, [1, 2, 7, 4]), 0)
    Picky.fail_on = 7
    runner = ProjectionRunner(projections(store, states), [AppliedEvents, Picky], **FAST)
    running = Running(runner)

    async def picky_retried() -> bool:
        # A retry saves the state just before the failed event: later retries start there.
        record = await states.get(Picky.name)
        return record is not None and record.position == 2

    await eventually(picky_retried)
    assert "no amount 7" in ((await running.status(Picky.name)).last_error or "")
    applied = await running.status(AppliedEvents.name)
    assert (applied.position, applied.last_error) == (4, None)
    await store.append(deposits(keys, 5, [8]), 4)
    await eventually(lambda: _async(runner.projections.position(AppliedEvents) == 5))

    Picky.fail_on = None
    await eventually(lambda: _async(runner.projections.position(Picky) == 5))
    status = await running.status(Picky.name)
    assert status.last_error is None
    assert (await runner.projections.projection(Picky)).state == 1 + 2 + 7 + 4 + 8
    await running.stop()


async def test_an_undecodable_event_of_another_group_does_not_touch_the_projection() -> None:
    store = InMemoryEventStore()
    await append_deposits(store, 1, 2)
    poison = stored_events(PartitionKeys.generate(OTHER_GROUP), 1, 1, payload="{not json")
    await store.append(poison, 0)
    await append_deposits(store, 1, 2)
    runner = ProjectionRunner(projections(store), [AppliedEvents], **FAST)
    running = Running(runner)
    await eventually(lambda: _async(runner.projections.position(AppliedEvents) == 5))
    status = await running.status(AppliedEvents.name)
    assert status.last_error is None and status.events_applied == 4
    await running.stop()


class Flaky:
    """An event store whose `read_all` fails after its first batch while `failing`."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.failing = True
        self.faults = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def read_all(self, after: int = 0, batch_size: int = 1000) -> AsyncIterator[Any]:
        first = True
        async for batch in self.store.read_all(after, 7):
            if not first and self.failing:
                self.faults += 1
                raise StoreConnectionError("the server went away")
            first = False
            yield batch


async def test_store_faults_are_retried_from_the_position_reached() -> None:
    store = InMemoryEventStore()
    ids = await append_deposits(store, 4, 10)
    flaky = Flaky(store)
    runner = ProjectionRunner(projections(flaky), [AppliedEvents], **FAST)  # type: ignore[arg-type]
    running = Running(runner)
    await eventually(lambda: _async(flaky.faults >= 3))
    assert "the server went away" in ((await running.status(AppliedEvents.name)).last_error or "")
    flaky.failing = False
    await eventually(lambda: _async(runner.projections.position(AppliedEvents) == 40))
    assert (await runner.projections.projection(AppliedEvents)).state == ids
    await running.stop()


async def test_concurrent_writers_lose_nothing_and_apply_nothing_twice() -> None:
    store = InMemoryEventStore()
    runner = ProjectionRunner(projections(store, persist_every=5), [AppliedEvents], **FAST)
    running = Running(runner)
    await asyncio.gather(*(append_deposits(store, 3, 20) for _ in range(4)))
    await eventually(lambda: _async(runner.projections.position(AppliedEvents) == 240))
    assert (await runner.projections.projection(AppliedEvents)).state == await all_ids(store)
    await running.stop()


async def test_every_registered_multi_projector_runs_by_default() -> None:
    runner = ProjectionRunner(projections(InMemoryEventStore()))
    assert set(runner.names) == {AccountList.name, AppliedEvents.name, Picky.name}


def test_a_poll_interval_above_the_longest_backoff_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="poll_interval"):
        ProjectionRunner(
            projections(InMemoryEventStore()),
            poll_interval=timedelta(seconds=10),
            max_backoff=timedelta(seconds=1),
        )


async def _async(value: bool) -> bool:
    return value


class ReadCountingStore(InMemoryEventStore):
    """Counts the events `read_all` hands out."""

    handed_out = 0

    async def read_all(  # type: ignore[override]
        self, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        async for batch in super().read_all(after_position, batch_size):
            self.handed_out += len(batch)
            yield batch


async def test_the_lag_of_a_projection_far_behind_is_counted_not_read() -> None:
    store = ReadCountingStore()
    for _ in range(50):
        await store.append(stored_events(PartitionKeys.generate(), 1, 100), 0)
    lag = await measure_lag(store, 10, datetime.now(UTC))
    assert lag.events == 4_990
    assert store.handed_out <= 1  # the first event after the position, for its age


class RevocableLeases:
    """Leases a test can take away, as a lost database session takes them."""

    def __init__(self) -> None:
        self.granting = True
        self.given: list[LocalLease] = []

    async def try_lease(self, name: str) -> LocalLease | None:
        if not self.granting:
            return None
        lease = LocalLease(name)
        self.given.append(lease)
        return lease


class LocalLease:
    def __init__(self, name: str) -> None:
        self.name, self.lost = name, False

    async def held(self) -> bool:
        return not self.lost

    async def release(self) -> None:
        self.lost = True


async def test_a_lost_lease_forgets_the_projection_and_resumes_from_the_store() -> None:
    store, states = InMemoryEventStore(), InMemoryProjectionStore()
    leases = RevocableLeases()
    runner = ProjectionRunner(
        projections(store, states),
        [AppliedEvents],
        leases=leases,
        standby_interval=timedelta(milliseconds=20),
        checkpoint_interval=timedelta(0),
        **FAST,
    )
    running = Running(runner)
    manager = runner.projections
    await append_deposits(store, 1, 3)
    await eventually(lambda: _async(manager.position(AppliedEvents) == 3))
    assert [lease.name for lease in leases.given] == ["projection:applied-events"]

    # Lost (a cut connection): it stops running the projection and drops its state;
    # meanwhile another holder moves the saved state on.
    leases.granting = False
    leases.given[0].lost = True
    await eventually(lambda: _async(runner.standing_by == ["applied-events"]))
    assert manager.position(AppliedEvents) == 0  # forgotten, not saved over
    await append_deposits(store, 1, 2)
    other = projections(store, states)
    await other.catch_up(AppliedEvents)
    assert await other.persist(AppliedEvents)

    leases.granting = True
    await eventually(lambda: _async(runner.standing_by == []))
    await eventually(lambda: _async(manager.position(AppliedEvents) == 5))
    assert manager.counters.restored == 1  # from the other holder's save, at 5
    await running.stop()
