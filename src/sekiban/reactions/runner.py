"""`ReactionRunner`: hosts reactions, process managers and the outbox dispatcher on the
global event order, each at its own checkpointed position.

Per subscriber the loop is the projections' catch-up: events in global order, the
position moving after each event. An event is handled at least once (a crash before the
checkpoint is saved hands it over again), and everything a handler writes carries a
command id derived from the event, so handling it again writes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sekiban.core.clock import Clock, utc_now
from sekiban.core.events import Event, EventPayload
from sekiban.core.serialization import StoredEvent
from sekiban.errors import ConfigurationError, SerializationError, UnknownReactionError
from sekiban.executor import SekibanExecutor
from sekiban.projections.projection import EventFilter
from sekiban.projections.store import InMemoryProjectionStore, ProjectionRecord, ProjectionStore
from sekiban.reactions.dispatcher import OutboxDispatcher
from sekiban.reactions.process import ProcessManager, ProcessSubscriber
from sekiban.reactions.reaction import Reaction
from sekiban.reactions.subscriber import DueWork, ReactionSubscriber, Subscriber
from sekiban.retry import RetryPolicy
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE

log = logging.getLogger("sekiban.reactions")

HANDLER_RETRY = RetryPolicy(
    attempts=5, base_delay=timedelta(milliseconds=100), max_delay=timedelta(seconds=5)
)
"""A failing handler is tried five times, about 0.1 s, 0.2 s, 0.4 s and 0.8 s apart
(jittered), before its event is parked."""

RECORD_PREFIX = "reaction:"
RECORD_ENCODING = "reaction-checkpoint+json"

Hosted = Reaction | ProcessManager[Any] | OutboxDispatcher
Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ParkedItem:
    """An event (or due work) whose handler kept failing: set aside, the stream moved on.

    `position` is the event's global position (0 for due work such as a timeout)."""

    label: str
    position: int
    event_id: str
    event_type: str
    error: str
    attempts: int
    parked_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "position": self.position,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "error": self.error,
            "attempts": self.attempts,
            "parked_at": self.parked_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParkedItem:
        return cls(**{**data, "parked_at": datetime.fromisoformat(data["parked_at"])})


@dataclass(slots=True)
class Subscription:
    """One subscriber's place in the global order, and what it parked."""

    subscriber: Subscriber
    reads: EventFilter
    position: int = 0
    handled: int = 0
    parked: list[ParkedItem] = field(default_factory=list)
    saved_position: int = -1

    @property
    def record_name(self) -> str:
        return RECORD_PREFIX + self.subscriber.name


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """Where a subscriber stands: `lag` events behind the end of the store when measured."""

    name: str
    position: int
    handled: int
    parked: tuple[ParkedItem, ...]
    state: dict[str, Any]


def subscriber_for(hosted: Hosted) -> Subscriber:
    """The subscriber that runs a reaction, a process manager or an outbox dispatcher."""
    if isinstance(hosted, Reaction):
        return ReactionSubscriber(hosted)
    if isinstance(hosted, ProcessManager):
        return ProcessSubscriber(hosted)
    return hosted


class ReactionRunner:
    """Runs reactions, process managers and outbox dispatchers against one executor.

    Each keeps a checkpoint in `store` (name `reaction:<name>`): its position, its
    parked items and its subscriber's state (pending timeouts, the outbox index). A
    handler that raises is tried again per `retry` (backoff through `sleep`), then the
    event is parked (`ParkedItem`: event, error, attempts) and the stream moves on;
    `retry_parked` hands parked events to the handler again. `clock` decides when
    timeouts and deliveries are due (inject a fake one in tests).

    `run_once` catches every subscriber up and runs the work that is due; `run` does that
    until stopped. Checkpoints are saved every `checkpoint_every` events and at the end
    of each `run_once`; a crash loses at most that much progress, never a decision.
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
            reads = EventFilter(subscriber, executor.domain)
            self.subscriptions[subscriber.name] = Subscription(subscriber, reads)
        self._started = False

    def now(self) -> datetime:
        return self.clock()

    async def start(self) -> None:
        """Restore every subscriber from its checkpoint (done by the first `run_once`)."""
        if self._started:
            return
        for subscription in self.subscriptions.values():
            record = await self.store.get(subscription.record_name)
            if record is not None and record.payload is not None:
                restore(subscription, record)
        self._started = True

    async def run_once(self) -> int:
        """Catch every subscriber up with the store, then run what is due; the number of
        events handled and due items run (0: nothing to do)."""
        await self.start()
        done = 0
        for subscription in self.subscriptions.values():
            worked = await self._catch_up(subscription) + await self._run_due(subscription)
            if worked or subscription.position != subscription.saved_position:
                await self.save(subscription)  # an idle round writes nothing
            done += worked
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
        self, stop: asyncio.Event, *, poll_interval: timedelta = timedelta(seconds=1)
    ) -> None:
        """`run_once` again and again (pausing `poll_interval` when idle) until `stop`
        is set; then save the checkpoints."""
        while not stop.is_set():
            if not await self.run_once():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_interval.total_seconds())
        await self.close()

    async def _catch_up(self, subscription: Subscription) -> int:
        handled = 0
        reads, to_event = subscription.reads, self.serializer.to_event
        async for batch in self.executor.event_store.read_all(
            subscription.position, self.batch_size
        ):
            for stored in batch:
                if reads(stored):
                    await self._deliver(subscription, stored, to_event(stored))
                    handled += 1
                subscription.position = stored.position or subscription.position
                if handled and handled % self.checkpoint_every == 0:
                    await self.save(subscription)
        subscription.handled += handled
        return handled

    async def _deliver(
        self, subscription: Subscription, stored: StoredEvent, event: Event[EventPayload]
    ) -> None:
        subscriber = subscription.subscriber
        label = f"event {stored.event_type} at {stored.position}"
        error, attempts = await self._attempt(subscriber.name, label, subscriber.handle, event)
        if error is not None:
            subscription.parked.append(
                ParkedItem(
                    label,
                    stored.position or 0,
                    stored.id,
                    stored.event_type,
                    describe(error),
                    attempts,
                    self.clock(),
                )
            )
            # Parked items are what an operator acts on: never lose one to a crash.
            await self.save(subscription)

    async def _run_due(self, subscription: Subscription) -> int:
        # Parked work stays parked until `retry_parked`, rather than failing every round.
        parked = {p.label for p in subscription.parked if not p.position}
        due = [w for w in subscription.subscriber.due(self.clock(), self) if w.label not in parked]
        for work in due:
            error, attempts = await self._attempt(
                subscription.subscriber.name, work.label, _run, work
            )
            if error is not None:
                subscription.parked.append(
                    ParkedItem(work.label, 0, "", "", describe(error), attempts, self.clock())
                )
                await self.save(subscription)
        return len(due)

    async def _attempt(
        self, name: str, label: str, handle: Callable[[Any, Any], Awaitable[None]], item: Any
    ) -> tuple[Exception | None, int]:
        """Run `handle(item, self)` up to `retry.attempts` times; the last error (None
        when it succeeded) and the number of attempts."""
        attempt = 1
        while True:
            try:
                await handle(item, self)
            except Exception as error:
                log.warning("%s: %s failed (attempt %d): %r", name, label, attempt, error)
                if not self.retry.retries_left(attempt):
                    log.error("%s: %s parked after %d attempts", name, label, attempt)
                    return error, attempt
                attempt += 1
                await self.sleep(self.retry.delay_before(attempt).total_seconds())
            else:
                return None, attempt

    async def retry_parked(self, name: str) -> int:
        """Hand the parked events of subscriber `name` to its handler again (once each,
        with the usual retries); those that fail again stay parked. Parked due work (a
        timeout) is unparked: it runs again with the next `run_once`. The number of
        events that succeeded.

        Raises `UnknownReactionError` if this runner hosts no subscriber `name`.
        """
        await self.start()
        subscription = self._subscription(name)
        parked, subscription.parked = subscription.parked, []
        succeeded = 0
        for item in parked:
            if not item.position:
                continue
            stored = await self._stored_at(item.position)
            if stored is None or stored.id != item.event_id:
                subscription.parked.append(item)
                continue
            before = len(subscription.parked)
            await self._deliver(subscription, stored, self.serializer.to_event(stored))
            succeeded += len(subscription.parked) == before
        await self.save(subscription)
        return succeeded

    async def _stored_at(self, position: int) -> StoredEvent | None:
        async for batch in self.executor.event_store.read_all(position - 1, 1):
            return batch[0] if batch else None
        return None

    def status(self) -> list[SubscriptionStatus]:
        """Every subscriber's position, parked items and state (as last restored or run)."""
        return [
            SubscriptionStatus(
                s.subscriber.name, s.position, s.handled, tuple(s.parked), s.subscriber.dump()
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
        await self.store.save(checkpoint(subscription, self.clock()))
        subscription.saved_position = subscription.position

    async def close(self) -> None:
        """Save every checkpoint (the stores stay open: they are the caller's)."""
        if self._started:
            for subscription in self.subscriptions.values():
                await self.save(subscription)


async def _run(work: DueWork, host: object) -> None:
    await work.run()


def describe(error: BaseException) -> str:
    """An error as a parked item or an outbox record shows it."""
    return f"{type(error).__name__}: {error}"


def checkpoint(subscription: Subscription, now: datetime) -> ProjectionRecord:
    """The subscription as a projection-store record (JSON in `payload`)."""
    body = json.dumps(
        {
            "position": subscription.position,
            "handled": subscription.handled,
            "parked": [p.to_dict() for p in subscription.parked],
            "state": subscription.subscriber.dump(),
        },
        separators=(",", ":"),
    ).encode()
    return ProjectionRecord(
        name=subscription.record_name,
        projector_version="reaction",
        schema_fingerprint="",
        position=subscription.position,
        events_applied=subscription.handled,
        taken_at=now,
        encoding=RECORD_ENCODING,
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        payload=body,
    )


def read_checkpoint(record: ProjectionRecord) -> dict[str, Any]:
    """The JSON body of a reaction checkpoint record."""
    assert record.payload is not None
    data: dict[str, Any] = json.loads(record.payload)
    return data


def restore(subscription: Subscription, record: ProjectionRecord) -> None:
    """Put the subscription where its checkpoint says; `SerializationError` if it
    cannot be read.

    A reaction's position is kept across code changes (unlike a projection's state,
    nothing is rebuilt): replaying from 0 would only be deduplicated work.
    """
    try:
        data = read_checkpoint(record)
        subscription.position = int(data["position"])
        subscription.handled = int(data.get("handled", 0))
        subscription.parked = [ParkedItem.from_dict(p) for p in data.get("parked", [])]
        subscription.subscriber.load(data.get("state", {}))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SerializationError(
            f"the checkpoint {record.name!r} cannot be read ({error}); delete it to start "
            "the reaction over from position 0 (its commands are deduplicated)"
        ) from error
    subscription.saved_position = subscription.position
