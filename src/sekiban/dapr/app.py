"""The actor host: a FastAPI app that serves `DaprAggregateActor` for one domain."""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

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
from sekiban.dapr.serializer import RawJsonSerializer, RawStateSerializer
from sekiban.dapr.timeouts import register_timeout_actor, timeout_actor_factory
from sekiban.executor import SekibanExecutor
from sekiban.limits import CommandLimits
from sekiban.reactions.process import ProcessManager
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


async def register_aggregate_actor(factory: ActorFactory) -> None:
    """Register the aggregate actor with the SDK runtime, with raw JSON serializers."""
    await ActorRuntime.register_actor(
        DaprAggregateActor,
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
    process_managers: Sequence[ProcessManager[Any]] = (),
) -> FastAPI:
    """A FastAPI app hosting `DaprAggregateActor` for `domain`; serve it with uvicorn.

    With `process_managers`, it also hosts `ProcessTimeoutActor`, which fires their
    timeouts when the reminders `dapr_reaction_runner` registers come due (needs the
    Dapr scheduler; see `sekiban.dapr.timeouts`).

    The event store is opened at startup (so a pool is created inside the server's
    event loop) and closed at shutdown. With `app_api_token` (default: the
    `APP_API_TOKEN` variable daprd also reads), requests without the matching
    `dapr-api-token` header are refused. `limits` bounds what one command may append.
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
        await register_aggregate_actor(factory)
        if process_managers:
            executor = SekibanExecutor(
                domain, event_store, conflict_retry=conflict_retry, limits=limits
            )
            await register_timeout_actor(timeout_actor_factory(executor, process_managers))
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
