"""Subscriptions: keep checkpointed readers of the global event order caught up, in
order, for as long as a process runs.

`SubscriptionRunner` is the mechanism, for anything that reads the events from its own
checkpoint (a `Subscriber`): it catches each one up, waits for appends (woken by the
event store's `EventNotifier` when it has one, else polling with backoff), survives
store faults and subscriber errors with backoff, saves checkpoints when idle, and stops
gracefully. `ProjectionRunner` runs multi-projections on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import timedelta
from typing import Any, Protocol

from sekiban.core.clock import Clock, utc_now
from sekiban.core.domain_types import DomainTypes
from sekiban.core.query import MultiProjector
from sekiban.errors import ConfigurationError, SekibanError, StoreError
from sekiban.projections.manager import Projections, ProjectorKey
from sekiban.projections.status import Lag, ProjectionStatus, measure_lag
from sekiban.stores.leases import Lease, LeaseProvider
from sekiban.stores.protocols import EventNotifier, EventStore

logger = logging.getLogger("sekiban.projections.runner")

FIRST_RETRY = 0.05
"""Seconds before the first retry after a failure; doubled per failure in a row, up to
the runner's `max_backoff`."""


class Subscriber(Protocol):
    """A reader of the global event order with its own position and checkpoint."""

    @property
    def name(self) -> str: ...

    @property
    def position(self) -> int:
        """The last event it has dealt with (0 before any)."""
        ...

    async def catch_up(self, stop: Callable[[], bool]) -> None:
        """Deal with the events after `position`, in order, up to the latest one; end
        after a batch when `stop()` says so. Raises `StoreError` on a store fault and
        another `SekibanError` when it cannot deal with an event."""
        ...

    def unsaved(self) -> bool:
        """Whether `position` moved since its checkpoint was saved."""
        ...

    async def save(self) -> None:
        """Save its checkpoint at `position` (logging, not raising, a failure)."""
        ...

    def forget(self) -> None:
        """Drop what it holds in memory: its next `catch_up` starts from its saved
        checkpoint (after a lease was lost, another process moved it on)."""
        ...


class _Follower:
    """A subscriber as the runner follows it: its wake-up and latest error."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.wake = asyncio.Event()
        self.last_error: str | None = None
        self.saved_at = time.monotonic()
        self.lease: Lease | None = None


class SubscriptionRunner:
    """Keeps every subscriber caught up until `stop()`.

    Each subscriber runs in its own task, so one that fails (a store fault, an event it
    cannot deal with) is retried with backoff while the others keep going. When nothing
    is new, a subscriber waits `poll_interval`, doubling up to `max_backoff` while it
    stays idle and starting again at `poll_interval` after activity; an event store that
    is an `EventNotifier` wakes it as soon as an append commits. An idle subscriber saves
    its checkpoint at most `checkpoint_interval` after its position moved.

    With `leases` (a `LeaseProvider`, usually the event store), a subscriber runs only
    while this process holds its lease (`<lease_scope>:<name>`): among the replicas of
    a service, one runs each subscriber and the others stand by, trying for the lease
    every `standby_interval`; a process that dies lets its leases go at once. A
    subscriber whose lease is lost stops, forgets its state and stands by.
    """

    def __init__(
        self,
        event_store: EventStore,
        subscribers: Sequence[Subscriber],
        *,
        poll_interval: timedelta = timedelta(milliseconds=200),
        max_backoff: timedelta = timedelta(seconds=5),
        checkpoint_interval: timedelta = timedelta(seconds=1),
        leases: LeaseProvider | None = None,
        lease_scope: str = "subscriber",
        standby_interval: timedelta = timedelta(seconds=2),
    ) -> None:
        if poll_interval <= timedelta(0) or max_backoff < poll_interval:
            raise ConfigurationError(
                f"poll_interval must be positive and at most max_backoff, got {poll_interval} "
                f"and {max_backoff}"
            )
        self.event_store = event_store
        self.poll_interval = poll_interval.total_seconds()
        self.max_backoff = max_backoff.total_seconds()
        self.checkpoint_interval = checkpoint_interval.total_seconds()
        self._followers = [_Follower(s) for s in subscribers]
        self._stopping = False
        self.leases = leases
        self.lease_scope = lease_scope
        self.standby_interval = standby_interval.total_seconds()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        """Follow every subscriber until `stop()`; then finish the current batches, save
        the checkpoints and return. An unexpected error (a bug, not a fault or a
        subscriber's `SekibanError`) stops every subscriber, saves, and is raised.
        A runner runs once: after `stop()`, `run` returns at once."""
        listener = None
        if isinstance(self.event_store, EventNotifier):
            listener = asyncio.create_task(self._listen(self.event_store))
        try:
            async with asyncio.TaskGroup() as group:
                for follower in self._followers:
                    group.create_task(self._follow(follower))
        finally:
            if listener is not None:
                listener.cancel()
                with suppress(asyncio.CancelledError):
                    await listener

    def stop(self) -> None:
        """Ask `run` to finish: each subscriber ends after its current batch, saves its
        checkpoint, and `run` returns. Safe to call from a signal handler on the loop."""
        self._stopping = True
        for follower in self._followers:
            follower.wake.set()

    def _stop_requested(self) -> bool:
        return self._stopping

    async def _follow(self, follower: _Follower) -> None:
        subscriber = follower.subscriber
        idle = self.poll_interval
        failures = 0
        try:
            while not self._stopping:
                if not await self._leads(follower):
                    await self._stand_by(follower)
                    continue
                before = subscriber.position
                try:
                    await subscriber.catch_up(self._stop_requested)
                except SekibanError as error:
                    failures += 1
                    pause = self._retry_pause(failures)
                    self._failed(follower, error, pause)
                else:
                    failures, follower.last_error = 0, None
                    moved = subscriber.position != before
                    idle = self.poll_interval if moved else min(idle * 2, self.max_backoff)
                    pause = await self._checkpoint_when_idle(follower, idle)
                if not self._stopping:
                    await self._pause(follower, pause)
        finally:
            if (self.leases is None or follower.lease is not None) and subscriber.unsaved():
                await subscriber.save()
            if follower.lease is not None:
                with suppress(StoreError):
                    await follower.lease.release()
                follower.lease = None

    async def _leads(self, follower: _Follower) -> bool:
        """Whether this process runs `follower` now: always without leases; else while
        it holds the lease, which it tries to take when it has none."""
        if self.leases is None:
            return True
        name = follower.subscriber.name
        try:
            if follower.lease is not None:
                if await follower.lease.held():
                    return True
                follower.lease = None
                follower.subscriber.forget()
                logger.warning("%s: lease lost; standing by", name)
                return False
            follower.lease = await self.leases.try_lease(f"{self.lease_scope}:{name}")
        except StoreError as error:
            follower.last_error = f"{type(error).__name__}: {error}"
            logger.warning("%s: lease not checked: %s; standing by", name, error)
            return False
        if follower.lease is not None:
            logger.info("%s: lease taken; running", name)
        return follower.lease is not None

    async def _stand_by(self, follower: _Follower) -> None:
        """Wait `standby_interval` (appends do not shorten it; `stop()` does)."""
        deadline = time.monotonic() + self.standby_interval
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            await self._pause(follower, left)

    @property
    def standing_by(self) -> list[str]:
        """The subscribers another process runs (leases only)."""
        if self.leases is None:
            return []
        return [f.subscriber.name for f in self._followers if f.lease is None]

    async def _checkpoint_when_idle(self, follower: _Follower, pause: float) -> float:
        """Save an idle subscriber's moved checkpoint once `checkpoint_interval` has
        passed since its last save here; the pause until then, or `pause`."""
        subscriber = follower.subscriber
        if self._stopping or not subscriber.unsaved():
            return pause
        due_in = follower.saved_at + self.checkpoint_interval - time.monotonic()
        if due_in > 0:
            return min(pause, due_in)
        await subscriber.save()
        follower.saved_at = time.monotonic()
        return pause

    def _retry_pause(self, failures: int) -> float:
        return min(FIRST_RETRY * 2.0 ** min(failures - 1, 30), self.max_backoff)

    def _failed(self, follower: _Follower, error: SekibanError, pause: float) -> None:
        kind = "store fault" if isinstance(error, StoreError) else "error"
        follower.last_error = f"{type(error).__name__}: {error}"
        logger.warning(
            "%s %s: %s; retrying in %.2f s", follower.subscriber.name, kind, error, pause
        )

    async def _pause(self, follower: _Follower, seconds: float) -> None:
        """Wait `seconds`, or less when woken (an append, or `stop()`)."""
        with suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await follower.wake.wait()
        follower.wake.clear()

    async def _listen(self, notifier: EventNotifier) -> None:
        """Wake every subscriber on each notified append; reconnect with backoff."""
        failures = 0
        while not self._stopping:
            try:
                appended = await notifier.wait_for_append(self.max_backoff)
            except StoreError as error:
                failures += 1
                pause = self._retry_pause(failures)
                logger.warning("append notifications lost: %s; retrying in %.2f s", error, pause)
                await asyncio.sleep(pause)
                continue
            failures = 0
            if appended:
                for follower in self._followers:
                    follower.wake.set()


class _ProjectionSubscriber:
    """A multi-projection of a `Projections` as a `Subscriber`."""

    def __init__(self, projections: Projections, key: ProjectorKey) -> None:
        self.projections = projections
        self.projector = projections.projector(key)
        self.name = self.projector.name

    @property
    def position(self) -> int:
        return self.projections.position(self.projector)

    async def catch_up(self, stop: Callable[[], bool]) -> None:
        await self.projections.catch_up(self.projector, stop=stop)

    def unsaved(self) -> bool:
        return self.projections.unsaved(self.projector)

    async def save(self) -> None:
        await self.projections.persist(self.projector)

    def forget(self) -> None:
        self.projections.forget(self.projector)


class ProjectionRunner(SubscriptionRunner):
    """Keeps multi-projections caught up continuously, each from its checkpoint.

    `projectors` default to every multi-projector the domain registers (directly or
    through a registered query). Checkpoints are saved every
    `ProjectionOptions.persist_every` events, when idle (see `SubscriptionRunner`), and
    on `stop()`; a restarted runner resumes from them. Store faults are retried with
    backoff from the position reached in memory; a projector error is recorded in
    `status()` and retried with backoff, from the last checkpoint, while the other
    projections keep running.

        runner = ProjectionRunner(executor.projections)
        task = asyncio.create_task(runner.run())
        ...
        runner.stop()
        await task
    """

    def __init__(
        self,
        projections: Projections,
        projectors: Sequence[ProjectorKey] | None = None,
        *,
        poll_interval: timedelta = timedelta(milliseconds=200),
        max_backoff: timedelta = timedelta(seconds=5),
        checkpoint_interval: timedelta = timedelta(seconds=1),
        leases: LeaseProvider | None = None,
        standby_interval: timedelta = timedelta(seconds=2),
        clock: Clock = utc_now,
    ) -> None:
        keys: Sequence[ProjectorKey] = (
            registered_projectors(projections.domain) if projectors is None else projectors
        )
        self.projections = projections
        self._clock = clock
        self._subscribers = [_ProjectionSubscriber(projections, k) for k in keys]
        names = [s.name for s in self._subscribers]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"a projector is named twice in {names}")
        super().__init__(
            projections.event_store,
            self._subscribers,
            poll_interval=poll_interval,
            max_backoff=max_backoff,
            checkpoint_interval=checkpoint_interval,
            leases=leases,
            lease_scope="projection",
            standby_interval=standby_interval,
        )

    @property
    def names(self) -> list[str]:
        """The projections this runner keeps, by projector name."""
        return [s.name for s in self._subscribers]

    async def status(self) -> list[ProjectionStatus]:
        """Each projection's position in this process, checkpoint, lag and last error.

        Lag is counted by the store where it can (see `measure_lag`); it is None while
        the store cannot be read.
        """
        statuses = []
        for follower, subscriber in zip(self._followers, self._subscribers, strict=True):
            projection = await self.projections.projection(subscriber.projector)
            try:
                lag = await measure_lag(self.event_store, projection.position, self._clock())
            except StoreError:
                lag = Lag(None, None)
            statuses.append(
                ProjectionStatus(
                    name=subscriber.name,
                    position=projection.position,
                    checkpoint=self.projections.checkpoint(subscriber.projector),
                    events_applied=projection.events_applied,
                    lag_events=lag.events,
                    lag_seconds=lag.seconds,
                    last_error=follower.last_error,
                )
            )
        return statuses


def registered_projectors(domain: DomainTypes) -> list[MultiProjector[Any]]:
    """The multi-projectors `domain` registers, directly or through its queries, one
    per name (the first registered wins)."""
    found: dict[str, MultiProjector[Any]] = {}
    for cls in domain.multi_projector_types.values():
        found.setdefault(cls.name, domain.multi_projector(cls))
    for query in domain.query_types.values():
        projector = getattr(query, "multi_projector", None)
        if projector is not None and projector.name not in found:
            found[projector.name] = domain.multi_projector(projector)
    return list(found.values())
