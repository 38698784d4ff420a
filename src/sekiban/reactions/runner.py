"""`ReactionRunner`: hosts reactions, process managers and the outbox dispatcher on the
global event order, each at its own checkpointed position.

It is a `SubscriptionRunner` (the machinery `ProjectionRunner` runs on): each hosted
item is a `Subscription`, woken by the store's append notifications (PostgreSQL
LISTEN/NOTIFY) or polling with backoff, retried with backoff after a store fault, saved
when idle and on stop. An event is handled at least once (a crash before the
checkpoint is saved hands it over again), and everything a handler writes carries a
command id derived from the event, so handling it again writes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sekiban.core.clock import Clock, utc_now
from sekiban.errors import ConfigurationError, UnknownReactionError
from sekiban.executor import SekibanExecutor
from sekiban.projections.runner import SubscriptionRunner
from sekiban.projections.store import InMemoryProjectionStore, ProjectionStore
from sekiban.reactions.checkpoint import RECORD_ENCODING, RECORD_PREFIX, read_checkpoint
from sekiban.reactions.dispatcher import OutboxDispatcher
from sekiban.reactions.parking import ParkedItem
from sekiban.reactions.process import ProcessManager, ProcessSubscriber
from sekiban.reactions.reaction import Reaction
from sekiban.reactions.subscriber import ReactionSubscriber, Subscriber
from sekiban.reactions.subscription import Sleep, Subscription, describe
from sekiban.retry import RetryPolicy
from sekiban.stores.leases import LeaseProvider
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE

__all__ = [
    "HANDLER_RETRY",
    "RECORD_ENCODING",
    "RECORD_PREFIX",
    "Hosted",
    "ParkedItem",
    "ReactionRunner",
    "Subscription",
    "SubscriptionStatus",
    "describe",
    "read_checkpoint",
    "subscriber_for",
]

HANDLER_RETRY = RetryPolicy(
    attempts=5, base_delay=timedelta(milliseconds=100), max_delay=timedelta(seconds=5)
)
"""A failing handler is tried five times, about 0.1 s, 0.2 s, 0.4 s and 0.8 s apart
(jittered), before its event is parked."""

Hosted = Reaction | ProcessManager[Any] | OutboxDispatcher | Subscriber
"""What a runner hosts; a `Subscriber` is hosted as it is (e.g. a process manager whose
timeouts Dapr reminders fire, `sekiban.dapr.timeouts`)."""


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """Where a subscriber stands: its position, events handled, what it parked (and
    held behind parked events), its state, and the latest error of a round."""

    name: str
    position: int
    handled: int
    parked: tuple[ParkedItem, ...]
    state: dict[str, Any]
    last_error: str | None = None


def subscriber_for(hosted: Hosted) -> Subscriber:
    """The subscriber that runs a reaction, a process manager or an outbox dispatcher."""
    if isinstance(hosted, Reaction):
        return ReactionSubscriber(hosted)
    if isinstance(hosted, ProcessManager):
        return ProcessSubscriber(hosted)
    return hosted


class ReactionRunner(SubscriptionRunner):
    """Runs reactions, process managers and outbox dispatchers against one executor.

    Each keeps a checkpoint in `store` (name `reaction:<name>`): its position, its
    parked items and its subscriber's state (pending timeouts, the outbox index). A
    handler that raises is tried again per `retry` (backoff through `sleep`), then the
    event is parked (`ParkedItem`: event, error, attempts), later events of its
    sequence key are held behind it, and the other keys flow on; `retry_parked` (or a
    `RequestParkedRetry` command, which a running runner reads from the store) hands
    them over again, in order. `clock` decides when timeouts and deliveries are due
    (inject a fake one in tests).

    `run()` keeps every subscriber caught up until `stop()` (see `SubscriptionRunner`:
    append notifications, polling backoff, store faults retried with backoff, idle
    checkpoints); due work is looked for on every round, so at most `max_backoff` late.
    `run_once`/`run_until_idle` do rounds on demand, for tests and batch jobs.
    Checkpoints are saved every `checkpoint_every` events, when a round did something,
    and on stop; a crash loses at most that much progress, never a decision.
    """

    def __init__(
        self,
        executor: SekibanExecutor,
        *hosted: Hosted,
        store: ProjectionStore | None = None,
        retry: RetryPolicy = HANDLER_RETRY,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        batch_size: int = DEFAULT_BATCH_SIZE,
        checkpoint_every: int = 100,
        poll_interval: timedelta = timedelta(milliseconds=200),
        max_backoff: timedelta = timedelta(seconds=5),
        checkpoint_interval: timedelta = timedelta(seconds=1),
        leases: LeaseProvider | None = None,
        standby_interval: timedelta = timedelta(seconds=2),
    ) -> None:
        self.executor = executor
        self.serializer = executor.repository.serializer
        self.store: ProjectionStore = store or InMemoryProjectionStore()
        self.retry = retry
        self.clock = clock
        self.sleep = sleep
        self.batch_size = batch_size
        self.checkpoint_every = checkpoint_every
        self.subscriptions: dict[str, Subscription] = {}
        for item in hosted:
            subscriber = subscriber_for(item)
            if subscriber.name in self.subscriptions:
                raise ConfigurationError(
                    f"two reactions are named {subscriber.name!r}: their checkpoints would clash"
                )
            self.subscriptions[subscriber.name] = Subscription(subscriber, self, executor.domain)
        super().__init__(
            executor.event_store,
            list(self.subscriptions.values()),
            poll_interval=poll_interval,
            max_backoff=max_backoff,
            checkpoint_interval=checkpoint_interval,
            leases=leases,
            lease_scope="reaction",
            standby_interval=standby_interval,
        )

    def now(self) -> datetime:
        return self.clock()

    async def start(self) -> None:
        """Restore every subscriber from its checkpoint (done by the first round)."""
        for subscription in self.subscriptions.values():
            await subscription.restore()

    async def run_once(self) -> int:
        """One round for every subscriber: catch up with the store, then run what is
        due; the number of events handled and due items run (0: nothing to do). A round
        that moved nothing writes nothing. Raises `StoreError` on a store fault."""
        done = 0
        for subscription in self.subscriptions.values():
            await subscription.catch_up(lambda: False)
            if subscription.unsaved():
                await subscription.write()
            done += subscription.worked
        return done

    async def run_until_idle(self, *, max_rounds: int = 100) -> int:
        """`run_once` until it finds nothing to do (or `max_rounds`); the total done."""
        total = 0
        for _ in range(max_rounds):
            done = await self.run_once()
            if not done:
                break
            total += done
        return total

    async def run(
        self, stop: asyncio.Event | None = None, *, poll_interval: timedelta | None = None
    ) -> None:
        """Keep every subscriber caught up until `stop()` (or `stop` is set), then save
        the checkpoints and return. `poll_interval` overrides the constructor's."""
        if poll_interval is not None:
            self.poll_interval = poll_interval.total_seconds()
            self.max_backoff = max(self.max_backoff, self.poll_interval)
        watcher = None if stop is None else asyncio.create_task(self._stop_on(stop))
        try:
            await super().run()
        finally:
            if watcher is not None:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    async def retry_parked(self, name: str, event_ids: Collection[str] | None = None) -> int:
        """Hand the parked events of subscriber `name` over again (all, or those
        `event_ids` names), each followed by the events held behind it, in order; one
        that fails again is parked again with the rest held behind it. Parked due work
        (a timeout) is unparked: it runs again with the next round. The number of events
        that succeeded. Call it while `run` is not running (a running runner acts on
        `RequestParkedRetry` commands instead).

        Raises `UnknownReactionError` if this runner hosts no subscriber `name`.
        """
        return await self._subscription(name).retry_parked(event_ids)

    def status(self) -> list[SubscriptionStatus]:
        """Every subscriber's position, parked items and state (as last restored or run)."""
        errors = {f.subscriber.name: f.last_error for f in self._followers}
        return [
            SubscriptionStatus(
                s.name,
                s.position,
                s.handled,
                tuple(s.parked),
                s.subscriber.dump(),
                errors.get(s.name),
            )
            for s in self.subscriptions.values()
        ]

    def _subscription(self, name: str) -> Subscription:
        subscription = self.subscriptions.get(name)
        if subscription is None:
            raise UnknownReactionError(name, sorted(self.subscriptions))
        return subscription

    async def save(self, subscription: Subscription) -> None:
        """Write the subscriber's checkpoint."""
        await subscription.write()

    async def close(self) -> None:
        """Save every restored checkpoint (the stores stay open: they are the caller's)."""
        for subscription in self.subscriptions.values():
            if subscription.restored:
                await subscription.write()
