"""`Subscription`: one hosted reaction, process manager or dispatcher as a checkpointed
`Subscriber` of the global event order (run by `ReactionRunner`, a
`SubscriptionRunner`).

Each round it hands the events after its position to its subscriber, in order, the
position moving after each, then runs the work that came due. A handler that raises is
retried with backoff, then its event is parked and later events of the same sequence
key are held behind it (`sekiban.reactions.parking`); a store fault is not the
handler's: it is raised, and the runner retries the round from the same event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sekiban.core.clock import Clock
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import Event, EventPayload
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import SerializationError, StoreError
from sekiban.executor import SekibanExecutor
from sekiban.projections.projection import EventFilter
from sekiban.projections.store import ProjectionStore
from sekiban.reactions.checkpoint import RECORD_PREFIX, checkpoint_record, read_checkpoint
from sekiban.reactions.events import ParkedRetryRequested
from sekiban.reactions.parking import ParkedEvents, ParkedItem, held_behind
from sekiban.reactions.subscriber import DueWork, Subscriber
from sekiban.retry import RetryPolicy

log = logging.getLogger("sekiban.reactions")

Sleep = Callable[[float], Awaitable[object]]


class RunnerHost(Protocol):
    """What a subscription uses of the runner hosting it."""

    executor: SekibanExecutor
    serializer: Serializer
    store: ProjectionStore
    retry: RetryPolicy
    clock: Clock
    sleep: Sleep
    batch_size: int
    checkpoint_every: int

    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class _Requests:
    """Reads the retry requests every subscription acts on, whatever else it reads."""

    groups: Collection[str] | None = None
    event_types: Collection[type[EventPayload]] | None = (ParkedRetryRequested,)


class Subscription:
    """A hosted subscriber's place in the global order, what it parked, and its
    checkpoint (record `reaction:<name>`)."""

    def __init__(self, subscriber: Subscriber, host: RunnerHost, domain: DomainTypes) -> None:
        self.subscriber = subscriber
        self.host = host
        self.name = subscriber.name
        self.reads = EventFilter(subscriber, domain)
        self.requests = EventFilter(_Requests(), domain)
        self.position = 0
        self.handled = 0
        self.parked = ParkedEvents()
        self.worked = 0
        """Events handled and due items run in the latest round."""
        self.restored = False
        self._saved_position = -1
        self._dirty = False

    @property
    def record_name(self) -> str:
        return RECORD_PREFIX + self.name

    # The Subscriber protocol of SubscriptionRunner.

    async def catch_up(self, stop: Callable[[], bool]) -> None:
        """One round: the events after `position`, then the due work (unless stopping).
        Raises `StoreError` on a store fault (the round is retried from `position`)."""
        await self.restore()
        self.worked = await self._read(stop)
        if not stop():
            self.worked += await self._run_due()

    def unsaved(self) -> bool:
        # Never restored (the store was away): nothing to save, and an empty checkpoint
        # must not be written over the stored one.
        return self.restored and (self._dirty or self.position != self._saved_position)

    async def save(self) -> None:
        """Save the checkpoint, logging (not raising) a store fault: the next save
        writes it."""
        try:
            await self.write()
        except StoreError as error:
            log.warning("%s: checkpoint not saved: %s", self.name, error)

    def forget(self) -> None:
        """Drop position, parked items and the subscriber's state: the next round
        restores them from the checkpoint."""
        self.position, self.handled = 0, 0
        self.parked = ParkedEvents()
        self.subscriber.load({})
        self.restored = False
        self._saved_position, self._dirty = -1, False

    # Checkpoints.

    async def write(self) -> None:
        """Save the checkpoint (raising `StoreError` on a store fault)."""
        body = {
            "position": self.position,
            "handled": self.handled,
            "parked": self.parked.to_list(),
            "state": self.subscriber.dump(),
        }
        await self.host.store.save(
            checkpoint_record(self.name, self.position, body, self.host.now())
        )
        self._saved_position, self._dirty = self.position, False

    async def restore(self) -> None:
        """Put the subscription where its checkpoint says (once); `SerializationError`
        if it cannot be read.

        A reaction's position is kept across code changes (unlike a projection's state,
        nothing is rebuilt): replaying from 0 would only be deduplicated work.
        """
        if self.restored:
            return
        record = await self.host.store.get(self.record_name)
        if record is not None and record.payload is not None:
            try:
                data = read_checkpoint(record)
                self.position = int(data["position"])
                self.handled = int(data.get("handled", 0))
                self.parked = ParkedEvents(ParkedItem.from_dict(p) for p in data.get("parked", []))
                self.subscriber.load(data.get("state", {}))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                raise SerializationError(
                    f"the checkpoint {record.name!r} cannot be read ({error}); delete it to "
                    "start the reaction over from position 0 (its commands are deduplicated)"
                ) from error
            self._saved_position = self.position
        self.restored = True

    # Events.

    async def _read(self, stop: Callable[[], bool]) -> int:
        handled = 0
        host = self.host
        to_event = host.serializer.to_event
        async for batch in host.executor.event_store.read_all(self.position, host.batch_size):
            for stored in batch:
                if self.requests(stored):
                    await self._requested(to_event(stored))
                elif self.reads(stored):
                    self.handled += await self._deliver(stored, to_event(stored))
                    handled += 1
                    if handled % host.checkpoint_every == 0:
                        self.position = stored.position or self.position
                        await self.write()
                self.position = stored.position or self.position
            if stop():
                break
        return handled

    async def _deliver(self, stored: StoredEvent, event: Event[EventPayload]) -> int:
        """Hand one event to the subscriber: held behind its key's parked event (0), or
        handled (1; retried, then parked)."""
        try:
            key, unkeyed = self.subscriber.sequence_key(event), None
        except Exception as raised:  # a user's `correlate` or `sequence_key` raised
            key, unkeyed = None, raised
        head = self.parked.head_of(key)
        item = ParkedItem(
            f"event {stored.event_type} at {stored.position}",
            stored.position or 0,
            stored.id,
            stored.event_type,
            "",
            0,
            self.host.now(),
            key,
        )
        if head is not None:
            self.parked.add(held_behind(item, head.event_id))
            self._dirty = True
            return 0
        if unkeyed is None:
            error, attempts = await self.attempt(item.label, self.subscriber.handle, event)
        else:
            # Its order cannot be known, so it cannot be handled in order: parked.
            log.error("%s: %s parked: no sequence key: %r", self.name, item.label, unkeyed)
            error, attempts = unkeyed, 1
        if error is not None:
            self.parked.add(replace(item, error=describe(error), attempts=attempts))
            # Parked items are what an operator acts on: never lose one to a crash.
            self.position = item.position or self.position
            await self.write()
        return 1

    async def _requested(self, event: Event[EventPayload]) -> None:
        request = event.payload
        if isinstance(request, ParkedRetryRequested) and request.reaction == self.name:
            await self.retry_parked(request.event_ids or None)

    async def retry_parked(self, event_ids: Collection[str] | None = None) -> int:
        """Hand parked events over again (all, or those named by `event_ids`), each head
        followed by the events held behind it, in order, until one fails again (it is
        parked again, the rest stay held behind it). Parked due work is unparked: it
        runs again when due. The number of events handled. On a store fault, what was
        not handed over yet is parked again, in order, and the fault raised."""
        await self.restore()
        succeeded = 0
        queues = self.parked.take(event_ids)
        try:
            while queues:
                queue = queues[0]
                while queue and queue[0].position:  # due work (position 0): `due` lists it
                    item = queue[0]
                    stored = await self._stored_at(item.position)
                    if stored is None or stored.id != item.event_id:
                        self._park_again(queue, "the store no longer has this event", 0)
                        break
                    event = self.host.serializer.to_event(stored)
                    error, attempts = await self.attempt(item.label, self.subscriber.handle, event)
                    if error is not None:
                        self._park_again(queue, describe(error), attempts)
                        break
                    queue.pop(0)
                    succeeded += 1
                queues.pop(0)
        finally:
            for queue in queues:  # interrupted: keep them, and their order
                if queue and queue[0].position:
                    self._park_again(queue, queue[0].error or "retry interrupted", 0)
            self._dirty = True
        await self.write()
        return succeeded

    def _park_again(self, queue: list[ParkedItem], error: str, attempts: int) -> None:
        """Park the first of `queue` as its key's head, the rest held behind it."""
        head = replace(queue[0], error=error, held_behind="", parked_at=self.host.now())
        self.parked.put_back(replace(head, attempts=attempts or head.attempts), queue[1:])
        queue.clear()

    async def _stored_at(self, position: int) -> StoredEvent | None:
        async for batch in self.host.executor.event_store.read_all(position - 1, 1):
            return batch[0] if batch else None
        return None

    # Due work.

    async def _run_due(self) -> int:
        host = self.host
        # Parked work stays parked until retried, rather than failing every round; work
        # of a key held behind a parked event waits for it (a timeout must not overtake
        # the event that came before it).
        parked = self.parked.labels()
        due = [
            w
            for w in self.subscriber.due(host.now(), host)
            if w.label not in parked and self.parked.head_of(w.key) is None
        ]
        for work in due:
            error, attempts = await self.attempt(work.label, _run, work)
            if error is not None:
                self.parked.add(
                    ParkedItem(work.label, 0, "", "", describe(error), attempts, host.now())
                )
                await self.write()
        if due:
            self._dirty = True  # the subscriber's state (timeouts, outbox index) moved
        return len(due)

    async def attempt(
        self, label: str, handle: Callable[[Any, Any], Awaitable[None]], item: Any
    ) -> tuple[Exception | None, int]:
        """Run `handle(item, host)` up to `retry.attempts` times; the last error (None
        when it succeeded) and the number of attempts. A `StoreError` is raised at once:
        the store, not the handler, failed, and the round is retried from this event."""
        host = self.host
        attempt = 1
        while True:
            try:
                await handle(item, host)
            except StoreError:
                raise
            except Exception as error:
                log.warning("%s: %s failed (attempt %d): %r", self.name, label, attempt, error)
                if not host.retry.retries_left(attempt):
                    log.error("%s: %s parked after %d attempts", self.name, label, attempt)
                    return error, attempt
                attempt += 1
                await host.sleep(host.retry.delay_before(attempt).total_seconds())
            else:
                return None, attempt


async def _run(work: DueWork, host: object) -> None:
    await work.run()


def describe(error: BaseException) -> str:
    """An error as a parked item or an outbox record shows it."""
    return f"{type(error).__name__}: {error}"
