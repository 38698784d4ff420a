"""The actor host: a FastAPI app that serves `DaprAggregateActor` and
`DaprProjectorActor` for one domain."""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from dapr.actor import Actor, ActorRuntime
from dapr.actor.id import ActorId
from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.actor.runtime.context import ActorRuntimeContext
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint
from starlette.types import ASGIApp, Receive, Scope, Send

from sekiban import telemetry
from sekiban.core.clock import Clock, utc_now
from sekiban.core.domain_types import DomainTypes
from sekiban.dapr.actor import DaprAggregateActor
from sekiban.dapr.projection_state import DEFAULT_MAX_ACTOR_STATE_BYTES
from sekiban.dapr.projector_actor import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_ANSWER_BYTES,
    DaprProjectorActor,
)
from sekiban.dapr.serializer import RawJsonSerializer, RawStateSerializer
from sekiban.limits import CommandLimits
from sekiban.projections import ProjectionOptions
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.snapshot.config import SnapshotConfiguration
from sekiban.stores.protocols import EventStore

ActorFactory = Callable[[ActorRuntimeContext, ActorId], Actor]


class TraceContextMiddleware:
    """Serves each request in the trace context of its `traceparent` header (which
    daprd forwards from the caller), so actor spans are children of the caller's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with telemetry.remote_context(scope["headers"]):
            await self.app(scope, receive, send)


def aggregate_actor_factory(
    domain: DomainTypes,
    event_store: EventStore,
    snapshot_config: SnapshotConfiguration | None = None,
    conflict_retry: RetryPolicy = CONFLICT_RETRY,
    clock: Clock = utc_now,
    limits: CommandLimits | None = None,
) -> ActorFactory:
    """What `register_actor(actor_factory=...)` calls to build each actor instance;
    `limits` bounds what one command may append (default `CommandLimits()`)."""

    def create(ctx: ActorRuntimeContext, actor_id: ActorId) -> Actor:
        return DaprAggregateActor(
            ctx,
            actor_id,
            domain=domain,
            event_store=event_store,
            snapshot_config=snapshot_config,
            conflict_retry=conflict_retry,
            clock=clock,
            limits=limits,
        )

    return create


def projector_actor_factory(
    domain: DomainTypes,
    event_store: EventStore,
    options: ProjectionOptions | None = None,
    max_state_bytes: int = DEFAULT_MAX_ACTOR_STATE_BYTES,
    clock: Clock = utc_now,
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL,
) -> ActorFactory:
    """What `register_actor(actor_factory=...)` calls to build each projector actor;
    `options` and `flush_interval` say when its state is saved, `max_state_bytes` how
    large a saved record may be, `max_answer_bytes` how large an answer (see
    `DaprProjectorActor`)."""

    def create(ctx: ActorRuntimeContext, actor_id: ActorId) -> Actor:
        return DaprProjectorActor(
            ctx,
            actor_id,
            domain=domain,
            event_store=event_store,
            options=options,
            max_state_bytes=max_state_bytes,
            max_answer_bytes=max_answer_bytes,
            flush_interval=flush_interval,
            clock=clock,
        )

    return create


async def register_actor(actor_type: type[Actor], factory: ActorFactory) -> None:
    """Register `actor_type` with the SDK runtime, built by `factory`, with raw JSON
    serializers (the SDK's own decoder would alter user data)."""
    await ActorRuntime.register_actor(
        actor_type,
        message_serializer=RawJsonSerializer(),
        state_serializer=RawStateSerializer(),
        actor_factory=factory,
    )


def create_actor_app(
    domain: DomainTypes,
    open_event_store: Callable[[], Awaitable[EventStore]],
    *,
    snapshot_config: SnapshotConfiguration | None = None,
    conflict_retry: RetryPolicy = CONFLICT_RETRY,
    actor_idle_timeout: timedelta = timedelta(minutes=15),
    app_api_token: str | None = None,
    limits: CommandLimits | None = None,
    projection_options: ProjectionOptions | None = None,
    max_projection_state_bytes: int = DEFAULT_MAX_ACTOR_STATE_BYTES,
    max_query_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    projection_flush_interval: timedelta = DEFAULT_FLUSH_INTERVAL,
) -> FastAPI:
    """A FastAPI app hosting `DaprAggregateActor` and `DaprProjectorActor` for
    `domain`; serve it with uvicorn.

    The event store is opened at startup (so a pool is created inside the server's
    event loop) and closed at shutdown. With `app_api_token` (default: the
    `APP_API_TOKEN` variable daprd also reads), requests without the matching
    `dapr-api-token` header are refused. `limits` bounds what one command may append.
    `projection_options` (its `persist_every` above all) and `projection_flush_interval`
    (a timer saving what a quiet projection applied) say how projector actors save
    their state, `max_projection_state_bytes` the largest record they write to actor
    state and `max_query_answer_bytes` the largest answer they send back (keep both
    under daprd's `--max-body-size`).
    """
    token = app_api_token if app_api_token is not None else os.environ.get("APP_API_TOKEN")
    expected = token.encode() if token else b""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        event_store = await open_event_store()
        ActorRuntime.set_actor_config(ActorRuntimeConfig(actor_idle_timeout=actor_idle_timeout))
        factory = aggregate_actor_factory(
            domain, event_store, snapshot_config, conflict_retry, limits=limits
        )
        await register_actor(DaprAggregateActor, factory)
        await register_actor(
            DaprProjectorActor,
            projector_actor_factory(
                domain,
                event_store,
                projection_options,
                max_projection_state_bytes,
                max_answer_bytes=max_query_answer_bytes,
                flush_interval=projection_flush_interval,
            ),
        )
        try:
            yield
        finally:
            await event_store.close()

    app = FastAPI(title="sekiban actor host", lifespan=lifespan)
    if token:

        @app.middleware("http")
        async def require_token(request: Request, call_next: RequestResponseEndpoint) -> Response:
            # Compared as bytes: `compare_digest` raises on non-ASCII str (a 500), and
            # Starlette decodes header bytes as latin-1, so this gives back the bytes sent.
            sent = request.headers.get("dapr-api-token", "").encode("latin-1")
            if request.url.path != "/healthz" and not hmac.compare_digest(sent, expected):
                return Response(status_code=401, content=b"missing or wrong dapr-api-token")
            return await call_next(request)

    if telemetry.ENABLED:
        app.add_middleware(TraceContextMiddleware)
    DaprActor(app)
    return app
