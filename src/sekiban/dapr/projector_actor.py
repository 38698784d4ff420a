"""DaprProjectorActor: one virtual actor per multi-projector, its projection's state and
checkpoint in actor state."""

# No `from __future__ import annotations`: the SDK reads the method annotations at
# runtime to pick how to decode arguments, and a string "str" is not `str`.

import dataclasses
import logging
import re
from datetime import timedelta

from dapr.actor import Actor, ActorInterface, actormethod
from dapr.actor.id import ActorId
from dapr.actor.runtime.context import ActorRuntimeContext

from sekiban import telemetry
from sekiban.core.clock import Clock, utc_now
from sekiban.core.domain_types import DomainTypes
from sekiban.core.query import Query
from sekiban.core.serialization import Serializer
from sekiban.dapr import messages
from sekiban.dapr.projection_state import (
    DEFAULT_MAX_ACTOR_STATE_BYTES,
    ActorStateBlobStore,
    ActorStateProjectionStore,
    inline_limit,
)
from sekiban.dapr.results import QueryResults
from sekiban.errors import ConfigurationError, QueryAnswerTooLargeError, SekibanError, StoreError
from sekiban.projections import ProjectionOptions, Projections, ProjectionStatus
from sekiban.projections.status import Lag, measure_lag
from sekiban.stores.protocols import EventStore

log = logging.getLogger("sekiban.dapr")

PROJECTION_FLUSH_TIMER = "projection-flush"
DEFAULT_FLUSH_INTERVAL = timedelta(seconds=30)
"""How often a projector actor saves events it applied since its last save. A timer,
not deactivation, is what saves a quiet projection: daprd 1.18 has already dropped the
actor when it calls the host to deactivate it, and refuses its state writes
(`ERR_ACTOR_INSTANCE_MISSING`)."""

DEFAULT_TURN_WAIT = timedelta(milliseconds=200)
"""The longest one call of a projector actor waits for a query's `after`. daprd runs one
call of an actor at a time, so a call that waited the caller's whole timeout would keep
every other query of the projection out meanwhile; the executor calls again until its
own timeout has passed, and the queries queued behind take their turns in between."""

DEFAULT_MAX_ANSWER_BYTES = 4 * 1024 * 1024 - 16 * 1024
"""The largest query answer (JSON) a projector actor sends back. daprd passes a reply
from one sidecar to another only up to its `--max-body-size` (4 MiB by default), and
the caller's sidecar is the actor's own only by chance: refused every time, the limit
does not depend on where the actor was placed."""

# What Dapr rejects or routes badly in an actor id: / \ # ? whitespace, control bytes.
_BAD_ACTOR_ID = re.compile(r"[/\\#?\s\x00-\x1f\x7f]")


def projector_actor_id(projector_name: str) -> str:
    """The actor id of a multi-projector's actor: its name, checked to be one Dapr
    routes (`ConfigurationError` otherwise: rename the projector)."""
    if not projector_name or projector_name in (".", "..") or _BAD_ACTOR_ID.search(projector_name):
        raise ConfigurationError(
            f"multi-projector name {projector_name!r} cannot be a Dapr actor id (no / \\ # "
            "?, whitespace or control characters, not . or ..): give the projector another name"
        )
    return projector_name


class ProjectorActorInterface(ActorInterface):
    """The methods a projector actor exposes; bodies are JSON (see `messages`)."""

    @actormethod(name="Query")  # type: ignore[untyped-decorator]
    async def query(self, request: str) -> bytes:
        raise NotImplementedError

    @actormethod(name="Status")  # type: ignore[untyped-decorator]
    async def status(self) -> str:
        raise NotImplementedError


class DaprProjectorActor(Actor, ProjectorActorInterface):
    """Hosts one multi-projection (the actor id is the multi-projector's name) and
    answers its queries.

    It is a `Projections` over this actor's state: the first query after activation
    restores the projection from the record in actor state (a record of another
    projector version or event schema, corrupt, or wrongly signed is refused and the
    projection rebuilt from position 0), every query catches it up from the event
    store, waits for `after` when given, and answers (an answer over `max_answer_bytes`
    as JSON raises `QueryAnswerTooLargeError`). The record is saved every
    `options.persist_every` events, and every `flush_interval` when events were applied
    since (a timer), so another app instance that takes the actor over (after a crash,
    or a rebalance) reads only the events after the last save. Errors come back as an
    error reply.

    Dapr runs one call of an actor at a time, so a call waits for `after` at most
    `turn_wait` and replies that the projection is not there yet; the executor asks
    again until its timeout, while the projection's other queries are answered.
    """

    def __init__(
        self,
        ctx: ActorRuntimeContext,
        actor_id: ActorId,
        *,
        domain: DomainTypes,
        event_store: EventStore,
        options: ProjectionOptions | None = None,
        max_state_bytes: int = DEFAULT_MAX_ACTOR_STATE_BYTES,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL,
        turn_wait: timedelta = DEFAULT_TURN_WAIT,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(ctx, actor_id)
        self.clock = clock
        self.turn_wait = turn_wait
        self.max_answer_bytes = max_answer_bytes
        self.flush_interval = flush_interval
        self.serializer = Serializer(domain)
        self.results = QueryResults(self.serializer)
        self.store = ActorStateProjectionStore(self, max_state_bytes)
        options = options or ProjectionOptions()
        # A large state goes in chunks (one request each), not in the record's request.
        inline = min(options.out_of_line_above, inline_limit(max_state_bytes))
        self.projections = Projections(
            domain,
            event_store,
            self.store,
            blob_store=ActorStateBlobStore(self, max_state_bytes),
            options=dataclasses.replace(options, out_of_line_above=inline),
            clock=clock,
        )

    async def _on_activate(self) -> None:
        # A timer, not a reminder: timers live in daprd and need no scheduler.
        interval = self.flush_interval
        await self.register_timer(PROJECTION_FLUSH_TIMER, self.flush, None, interval, interval)

    async def flush(self, _: object = None) -> None:
        """Timer callback: save the record if events were applied since the last save
        (a failure is logged and counted; the next tick tries again)."""
        await self.projections.close()  # saves what is unsaved; the manager stays usable

    async def _on_deactivate(self) -> None:
        # Where the runtime allows it (the in-process harness does; daprd 1.18 refuses
        # writes by now, logged and counted), save what the last tick did not.
        await self.projections.close()

    async def query(self, request: str) -> bytes:
        with telemetry.actor_method(type(self).__name__, self.id.id, "Query") as span:
            try:
                query, after, timeout = messages.parse_query_request(self.serializer, request)
                self._check_target(type(query))
                wait = min(timeout, self.turn_wait)
                answer = await self.projections.query(query, after=after, timeout=wait)
                data = self.results.dump(type(query), answer)
                if len(data) > self.max_answer_bytes:
                    raise QueryAnswerTooLargeError(
                        f"the answer of {type(query).__name__} is {len(data)} bytes, over the "
                        f"limit of {self.max_answer_bytes} for a projector actor's reply; ask "
                        "for less (a page of a ListQuery)"
                    )
                return messages.query_reply(data)
            except Exception as error:  # every failure becomes an error reply
                return (await self._error_reply(span, "Query", error)).encode()

    async def status(self) -> str:
        """Where the projection stands after catching up, as a `ProjectionStatus`
        (JSON): position, checkpoint (the position of the state this actor restored or
        last saved), events applied, lag, and why the catch-up failed if it did."""
        with telemetry.actor_method(type(self).__name__, self.id.id, "Status") as span:
            try:
                return messages.status_reply(await self._status(self.id.id))
            except Exception as error:
                return await self._error_reply(span, "Status", error)

    async def _status(self, name: str) -> ProjectionStatus:
        last_error = None
        try:
            await self.projections.catch_up(name)
        except SekibanError as error:  # a projector error or a store fault: reported
            last_error = str(error)
        projection = await self.projections.projection(name)
        try:
            lag = await measure_lag(self.projections.event_store, projection.position, self.clock())
        except StoreError:
            lag = Lag(None, None)
        return ProjectionStatus(
            name=name,
            position=projection.position,
            checkpoint=self.projections.checkpoint(name),
            events_applied=projection.events_applied,
            lag_events=lag.events,
            lag_seconds=lag.seconds,
            last_error=last_error,
        )

    async def _error_reply(self, span: telemetry.Span, method: str, error: Exception) -> str:
        telemetry.record_error(span, error)
        # The SDK drops pending state changes only on Dapr errors: drop ours, so the
        # end-of-call save cannot write what the failed call left pending.
        await self._state_manager.clear_cache()
        if not isinstance(error, SekibanError):
            log.info("%s on %s failed: %r", method, self.id, error)
        return messages.error_reply(error)

    def _check_target(self, query_type: type[Query[object]]) -> None:
        name = self.projections.projector(query_type.multi_projector).name
        if name != self.id.id:
            raise ConfigurationError(
                f"query {query_type.__name__} reads projector {name!r}, sent to the actor "
                f"of {self.id.id!r}"
            )
