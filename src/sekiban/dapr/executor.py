"""DaprSekibanExecutor: the executor interface, with aggregates in Dapr actors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import aiohttp
import httpx
from dapr.actor import ActorProxy, ActorProxyFactory
from dapr.actor.id import ActorId
from dapr.clients.exceptions import DaprHttpError, DaprInternalError
from dapr.conf import settings

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.command import Command, CommandResponse, command_keys, command_metadata
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import EventMetadata
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import Query
from sekiban.core.serialization import Serializer
from sekiban.dapr import messages
from sekiban.dapr.actor import DaprAggregateActor, actor_id_for
from sekiban.dapr.serializer import RawJsonSerializer
from sekiban.errors import DaprUnavailableError
from sekiban.loading import LoadResult
from sekiban.projections import Projections
from sekiban.stores.protocols import EventStore

R = TypeVar("R")
T = TypeVar("T")
log = logging.getLogger("sekiban.dapr")


class DaprSekibanExecutor:
    """Sends commands and loads to aggregate actors; answers queries locally.

    `command` and `load_aggregate` go through the SDK's `ActorProxy` to the
    `DaprAggregateActor` of the aggregate (one per partition keys and projector).
    `query` catches multi-projections up from `event_store` in this process: the events
    are the truth, and a local catch-up needs no extra actor round trip. Sidecar
    failures (connection refused, timeouts, 5xx before the actor ran) are retried
    `transient_retries` times; an unreachable sidecar raises `DaprUnavailableError`.

    `dapr_http_endpoint` (e.g. "http://127.0.0.1:3500") sets the SDK's process-wide
    endpoint; by default the SDK reads `DAPR_HTTP_PORT` like every Dapr app.
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore,
        *,
        dapr_http_endpoint: str | None = None,
        timeout_seconds: int = 60,
        transient_retries: int = 5,
        retry_delay_seconds: float = 0.2,
    ) -> None:
        self.domain = domain
        self.event_store = event_store
        self.serializer = Serializer(domain)
        self.projections = Projections(domain, event_store)
        if dapr_http_endpoint is not None:
            setattr(settings, "DAPR_HTTP_ENDPOINT", dapr_http_endpoint.rstrip("/"))  # noqa: B010
        self.timeout_seconds = timeout_seconds
        self.transient_retries = transient_retries
        self.retry_delay_seconds = retry_delay_seconds
        self._factory: ActorProxyFactory | None = None

    @property
    def endpoint(self) -> str:
        return str(
            getattr(settings, "DAPR_HTTP_ENDPOINT", None)
            or f"http://{settings.DAPR_RUNTIME_HOST}:{settings.DAPR_HTTP_PORT}"
        )

    async def command(
        self, command: Command, metadata: EventMetadata | None = None
    ) -> CommandResponse:
        """Run `command` in its aggregate's actor. A refusal raises `RemoteCommandError`
        naming the actor-side error (e.g. "AggregateStateError").

        `metadata.causation_id` identifies the command (a fresh one by default): calls
        retried after a lost reply, or repeated by the caller with the same causation
        id, are applied once and answered with the original reply.
        """
        keys = command_keys(command)
        projector = self.domain.projector(type(command).projector)
        metadata = command_metadata(metadata)
        body = messages.command_request(self.serializer, command, metadata)
        try:
            return await self._invoke(
                actor_id_for(projector.name, keys),
                "ExecuteCommand",
                body,
                lambda reply: messages.parse_command_reply(self.serializer, reply),
            )
        except DaprUnavailableError as error:
            raise DaprUnavailableError(
                f"{error}. The command's outcome is unknown: it may have been applied. "
                f"Send it again with causation_id={metadata.causation_id!r} to apply it "
                "at most once."
            ) from error.__cause__

    async def load(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> LoadResult:
        """The aggregate from its actor, with the statistics of the actor's activation."""
        name = self.domain.projector(projector).name
        return await self._invoke(
            actor_id_for(name, partition_keys),
            "LoadAggregate",
            None,
            lambda reply: messages.parse_aggregate_reply(self.serializer, reply),
        )

    async def load_aggregate(
        self, projector: type[AggregateProjector], partition_keys: PartitionKeys
    ) -> Aggregate[AggregatePayload]:
        return (await self.load(projector, partition_keys)).aggregate

    async def query(self, query: Query[R]) -> R:
        return await self.projections.query(query)

    async def _invoke(
        self, actor_id: str, method: str, body: bytes | None, parse: Callable[[bytes], T]
    ) -> T:
        """Call `method` on the actor and parse its reply, retrying transport faults.

        A fault is anything that is not a whole reply from our actor: no connection, a
        timeout, a Dapr error status, or a reply that is empty, cut short or not JSON.
        Retrying a command is safe because the actor recognises its causation id.
        """
        fault = ""
        last_error: BaseException | None = None
        for attempt in range(self.transient_retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay_seconds * 2 ** (attempt - 1))
            try:
                return parse(await self._call(actor_id, method, body))
            except (
                TimeoutError,
                aiohttp.ClientError,
                DaprUnavailableError,
                DaprInternalError,
                messages.IncompleteMessageError,
            ) as error:
                last_error, fault = error, describe_fault(error)
            log.warning(
                "actor call %s.%s failed (attempt %d of %d): %s",
                actor_id,
                method,
                attempt + 1,
                self.transient_retries + 1,
                fault,
            )
        raise DaprUnavailableError(
            f"calling {method} on actor {actor_id} through {self.endpoint} failed "
            f"{self.transient_retries + 1} times; last: {fault}"
        ) from last_error

    async def _call(self, actor_id: str, method: str, body: bytes | None) -> bytes:
        """One actor call through the sidecar; the raw reply body."""
        factory = await self._proxy_factory()
        proxy = ActorProxy.create(
            DaprAggregateActor.__name__, ActorId(actor_id), actor_proxy_factory=factory
        )
        reply: bytes = await proxy.invoke_method(method, body)
        return reply

    async def _proxy_factory(self) -> ActorProxyFactory:
        if self._factory is None:
            # The SDK's client waits for the sidecar synchronously when it is built;
            # ask first, without blocking the event loop, and fail clearly.
            url = f"{self.endpoint}/v1.0/healthz/outbound"
            try:
                async with httpx.AsyncClient(timeout=2.0) as client:
                    response = await client.get(url, headers=_token_headers())
                response.raise_for_status()
            except httpx.HTTPError as error:
                raise DaprUnavailableError(
                    f"no Dapr sidecar answers at {self.endpoint} ({error!r}); start daprd "
                    "or set DAPR_HTTP_PORT / dapr_http_endpoint"
                ) from error
            self._factory = ActorProxyFactory(
                message_serializer=RawJsonSerializer(), http_timeout_seconds=self.timeout_seconds
            )
        return self._factory


def _token_headers() -> dict[str, str]:
    token = settings.DAPR_API_TOKEN
    return {"dapr-api-token": token} if token else {}


def describe_fault(error: BaseException) -> str:
    """One line for a failed actor call: HTTP status, Dapr error code, the body's start.

    The SDK's `DaprHttpError` prints as its serializer object, so its fields are read here.
    """
    if isinstance(error, DaprHttpError):
        raw = error.raw_response_bytes or b""
        head = raw[:200].decode(errors="replace")
        return (
            f"HTTP {error.status_code} {error.reason or ''}, Dapr error code "
            f"{error.error_code}, body {head!r} ({len(raw)} bytes)"
        )
    if isinstance(error, DaprInternalError):
        return f"Dapr error code {error.error_code}: {error.message}"
    if isinstance(error, messages.IncompleteMessageError):
        return f"incomplete reply: {error}"
    return f"{type(error).__name__}: {error}"
