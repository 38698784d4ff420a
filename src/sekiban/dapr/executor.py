"""DaprSekibanExecutor: the `Executor` protocol, with aggregates in Dapr actors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import aiohttp

from sekiban import telemetry
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
from sekiban.errors import DaprUnavailableError
from sekiban.loading import LoadResult
from sekiban.projections import Projections
from sekiban.projections.manager import DEFAULT_CONSISTENCY_TIMEOUT
from sekiban.retry import TRANSIENT_RETRY, RetryPolicy
from sekiban.stores.protocols import EventStore

R = TypeVar("R")
T = TypeVar("T")
log = logging.getLogger("sekiban.dapr")


class SidecarStatusError(Exception):
    """daprd answered an actor call with a non-2xx status: a transport fault, retried.

    Internal: after the last retry it is the `__cause__` of `DaprUnavailableError`.
    """

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status, self.reason, self.body = status, reason, body
        self.error_code = _dapr_error_code(body)
        super().__init__(f"HTTP {status} {reason}")


class DaprSekibanExecutor:
    """Sends commands and loads to aggregate actors; answers queries locally.

    `command` and `load_aggregate` call the `DaprAggregateActor` of the aggregate (one
    per partition keys and projector) through daprd's actor API over HTTP.
    `query` catches multi-projections up from `event_store` in this process: the events
    are the truth, and a local catch-up needs no extra actor round trip. Sidecar
    failures (connection refused, timeouts, non-2xx statuses, replies cut short) are
    retried as `transient_retry` says; when it is exhausted, `DaprUnavailableError`.

    Every setting belongs to this executor; no Dapr SDK global is read or written, so
    executors with different sidecars or tokens coexist in one process.
    `dapr_http_endpoint` (e.g. "http://127.0.0.1:3500") defaults to the
    `DAPR_HTTP_ENDPOINT` environment variable, else `http://127.0.0.1:$DAPR_HTTP_PORT`
    (port 3500 when unset), as every Dapr app reads them. `api_token` (sent as
    `dapr-api-token`) defaults to `DAPR_API_TOKEN`; "" sends none. `timeout` bounds one
    actor call.
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore,
        *,
        dapr_http_endpoint: str | None = None,
        api_token: str | None = None,
        timeout: timedelta = timedelta(seconds=60),
        transient_retry: RetryPolicy = TRANSIENT_RETRY,
    ) -> None:
        self.domain = domain
        self.event_store = event_store
        self.serializer = Serializer(domain)
        self.projections = Projections(domain, event_store)
        self.endpoint = (dapr_http_endpoint or _endpoint_from_environment()).rstrip("/")
        self.api_token = os.environ.get("DAPR_API_TOKEN", "") if api_token is None else api_token
        self.timeout = timeout
        self.transient_retry = transient_retry

    async def command(
        self,
        command: Command,
        metadata: EventMetadata | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandResponse:
        """Run `command` in its aggregate's actor. A refusal raises `RemoteCommandError`
        naming the actor-side error (e.g. "AggregateStateError").

        `command_id` (or `metadata.causation_id`; a fresh one by default) identifies the
        command: calls retried after a lost reply, or repeated by the caller with the
        same id, are applied once (the event store keeps the id unique per aggregate)
        and answered with the original reply. Both given and different:
        `CommandIdMismatchError`.
        """
        keys = command_keys(command)
        projector = self.domain.projector(type(command).projector)
        metadata = command_metadata(metadata, command_id)
        body = messages.command_request(self.serializer, command, metadata)
        name = type(command).__name__
        try:
            with telemetry.command(name, projector.name, keys, metadata.causation_id) as span:
                response = await self._invoke(
                    actor_id_for(projector.name, keys),
                    "ExecuteCommand",
                    body,
                    lambda reply: messages.parse_command_reply(self.serializer, reply),
                )
                telemetry.command_applied(span, len(response.events), response.version)
                return response
        except DaprUnavailableError as error:
            raise DaprUnavailableError(
                f"{error}. The command's outcome is unknown: it may have been applied. "
                f"Send it again with command_id={metadata.causation_id!r} to apply it "
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

    async def query(
        self,
        query: Query[R],
        *,
        after: CommandResponse | str | None = None,
        timeout: timedelta = DEFAULT_CONSISTENCY_TIMEOUT,
    ) -> R:
        """Answer `query`, caught up to the latest event (with `after`, including that
        command's events: see `sekiban.Executor.query`)."""
        return await self.projections.query(query, after=after, timeout=timeout)

    async def _invoke(
        self, actor_id: str, method: str, body: bytes | None, parse: Callable[[bytes], T]
    ) -> T:
        """Call `method` on the actor and parse its reply, retrying transport faults.

        A fault is anything that is not a whole reply from our actor: no connection, a
        timeout, a non-2xx status, or a reply that is empty, cut short or not JSON.
        Retrying a command is safe: its command id (the causation id) is applied once.
        """
        with telemetry.actor_call(DaprAggregateActor.__name__, actor_id, method):
            return await self._invoke_with_retry(actor_id, method, body, parse)

    async def _invoke_with_retry(
        self, actor_id: str, method: str, body: bytes | None, parse: Callable[[bytes], T]
    ) -> T:
        retry = self.transient_retry
        attempt = 1
        while True:
            try:
                return parse(await self._call(actor_id, method, body))
            except (
                TimeoutError,
                aiohttp.ClientError,
                SidecarStatusError,
                messages.IncompleteMessageError,
            ) as error:
                fault = describe_fault(error)
                log.warning(
                    "actor call %s.%s failed (attempt %d of %d): %s",
                    actor_id,
                    method,
                    attempt,
                    retry.attempts,
                    fault,
                )
                if not retry.retries_left(attempt):
                    raise DaprUnavailableError(
                        f"calling {method} on actor {actor_id} through {self.endpoint} "
                        f"failed {attempt} times; last: {fault}. Check that daprd runs "
                        "there (dapr_http_endpoint, or DAPR_HTTP_ENDPOINT / DAPR_HTTP_PORT)"
                    ) from error
            attempt += 1
            telemetry.actor_call_retrying(method, attempt, fault)
            await asyncio.sleep(retry.delay_before(attempt).total_seconds())

    async def _call(self, actor_id: str, method: str, body: bytes | None) -> bytes:
        """One actor call through the sidecar; the raw reply body of a 2xx answer.

        The call the Dapr SDK's `DaprActorHttpClient.invoke_method` makes, with this
        executor's endpoint, token and timeout. Raises `SidecarStatusError` otherwise.
        """
        url = (
            f"{self.endpoint}/v1.0/actors/{DaprAggregateActor.__name__}/{actor_id}/method/{method}"
        )
        headers = {"Content-Type": "application/json"}
        if self.api_token:
            headers["dapr-api-token"] = self.api_token
        # daprd passes `traceparent` on to the actor host: its spans join this trace.
        telemetry.inject(headers)
        timeout = aiohttp.ClientTimeout(total=self.timeout.total_seconds())
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.put(url, data=body or b"", headers=headers) as response,
        ):
            reply = await response.read()
            if 200 <= response.status < 300:
                return reply
            raise SidecarStatusError(response.status, response.reason or "", reply)


def _endpoint_from_environment() -> str:
    endpoint = os.environ.get("DAPR_HTTP_ENDPOINT")
    if endpoint:
        return endpoint
    host = os.environ.get("DAPR_RUNTIME_HOST", "127.0.0.1")
    return f"http://{host}:{os.environ.get('DAPR_HTTP_PORT', '3500')}"


def _dapr_error_code(body: bytes) -> str:
    """The `errorCode` of a Dapr error body, or "" when the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    code = data.get("errorCode") if isinstance(data, dict) else None
    return str(code) if code else ""


def describe_fault(error: BaseException) -> str:
    """One line for a failed actor call: HTTP status, Dapr error code, the body's start."""
    if isinstance(error, SidecarStatusError):
        head = error.body[:200].decode(errors="replace")
        return (
            f"HTTP {error.status} {error.reason}, Dapr error code "
            f"{error.error_code or 'none'}, body {head!r} ({len(error.body)} bytes)"
        )
    if isinstance(error, messages.IncompleteMessageError):
        return f"incomplete reply: {error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"no Dapr sidecar answers ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"
