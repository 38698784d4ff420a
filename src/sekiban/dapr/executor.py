"""DaprSekibanExecutor: the `Executor` protocol, with aggregates in Dapr actors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp

from sekiban import telemetry
from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.command import Command, CommandResponse, command_keys, command_metadata
from sekiban.core.domain_types import DomainTypes
from sekiban.core.events import EventMetadata
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import MultiProjector, Query
from sekiban.core.serialization import Serializer
from sekiban.dapr import messages
from sekiban.dapr.actor import DaprAggregateActor, actor_id_for
from sekiban.dapr.projector_actor import DaprProjectorActor, projector_actor_id
from sekiban.dapr.results import QueryResults
from sekiban.errors import ConsistencyTimeoutError, DaprUnavailableError, SekibanError
from sekiban.loading import LoadResult
from sekiban.projections import ConsistencyToken, ProjectionStatus
from sekiban.projections.manager import DEFAULT_CONSISTENCY_TIMEOUT
from sekiban.retry import TRANSIENT_RETRY, RetryPolicy
from sekiban.stores.protocols import EventStore

R = TypeVar("R")
T = TypeVar("T")
log = logging.getLogger("sekiban.dapr")

AGGREGATE_ACTOR_TYPE = DaprAggregateActor.__name__
PROJECTOR_ACTOR_TYPE = DaprProjectorActor.__name__
_NEXT_TURN = 0.01
"""Seconds before asking a projector actor again for a query waiting on `after`."""


class SidecarStatusError(Exception):
    """daprd answered an actor call with a non-2xx status: a transport fault, retried.

    Internal: after the last retry it is the `__cause__` of `DaprUnavailableError`.
    """

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status, self.reason, self.body = status, reason, body
        self.error_code = _dapr_error_code(body)
        super().__init__(f"HTTP {status} {reason}")


class DaprSekibanExecutor:
    """Sends commands and loads to aggregate actors, queries to projector actors.

    `command` and `load_aggregate` call the `DaprAggregateActor` of the aggregate (one
    per partition keys and projector), `query` the `DaprProjectorActor` of the query's
    multi-projector (one per projector name), through daprd's actor API over HTTP.
    Sidecar failures (connection refused, timeouts, non-2xx statuses, replies cut
    short) are retried as `transient_retry` says; when it is exhausted,
    `DaprUnavailableError`.

    Every setting belongs to this executor; no Dapr SDK global is read or written, so
    executors with different sidecars or tokens coexist in one process.
    `dapr_http_endpoint` (e.g. "http://127.0.0.1:3500") defaults to the
    `DAPR_HTTP_ENDPOINT` environment variable, else `http://127.0.0.1:$DAPR_HTTP_PORT`
    (port 3500 when unset), as every Dapr app reads them. `api_token` (sent as
    `dapr-api-token`) defaults to `DAPR_API_TOKEN`; "" sends none. `timeout` bounds one
    actor call (a query's call gets its consistency timeout on top). The actors read
    the events; this executor does not, so `event_store` may be left out (it is kept
    as `self.event_store` for callers that share one).
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore | None = None,
        *,
        dapr_http_endpoint: str | None = None,
        api_token: str | None = None,
        timeout: timedelta = timedelta(seconds=60),
        transient_retry: RetryPolicy = TRANSIENT_RETRY,
    ) -> None:
        self.domain = domain
        self.event_store = event_store
        self.serializer = Serializer(domain)
        self.results = QueryResults(self.serializer)
        self.endpoint = (dapr_http_endpoint or endpoint_from_environment()).rstrip("/")
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
        after: CommandResponse | ConsistencyToken | str | None = None,
        timeout: timedelta = DEFAULT_CONSISTENCY_TIMEOUT,
    ) -> R:
        """Answer `query` in the projector actor of its multi-projector, caught up to the
        latest event (with `after`, including that command's events: the actor waits
        up to `timeout`, then `ConsistencyTimeoutError`; see `sekiban.Executor.query`).

        The query type must be registered in the domain. The answer comes back as the
        type the query declares (see `sekiban.dapr.results`). A query is only read, so
        transport faults are retried like commands; errors the actor raised come back
        as `RemoteCommandError` naming them (e.g. "ProjectionError").
        """
        query_type = type(query)
        projector = self.domain.multi_projector(query_type.multi_projector)
        self.results.adapter(query_type)  # an answer type it cannot carry fails here
        token = None if after is None else str(ConsistencyToken.of(after))
        # The actor waits for `after` a turn at a time (DEFAULT_TURN_WAIT): the wait is
        # ours, asked again until `timeout`, so its other queries go in between.
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            remaining = timedelta(seconds=max(0.0, deadline - time.monotonic()))
            body = messages.query_request(self.serializer, query, token, remaining)
            try:
                answer: R = await self._invoke(
                    projector_actor_id(projector.name),
                    "Query",
                    body,
                    lambda reply: self.results.load(query_type, messages.parse_query_reply(reply)),
                    actor_type=PROJECTOR_ACTOR_TYPE,
                    timeout=self.timeout + remaining,
                )
                return answer
            except ConsistencyTimeoutError:
                if time.monotonic() >= deadline:
                    raise ConsistencyTimeoutError(
                        f"projection {projector.name!r} did not apply the events of {token} "
                        f"within {timeout.total_seconds():g} s"
                    ) from None
            await asyncio.sleep(min(_NEXT_TURN, max(0.0, deadline - time.monotonic())))

    async def projector_status(
        self, projector: type[MultiProjector[Any]] | str
    ) -> ProjectionStatus:
        """Where a multi-projector's actor stands after catching up (activating it if
        it is not active): position, checkpoint (the position of the state it restored
        or last saved), events applied, lag, and why its catch-up failed if it did."""
        name = self.domain.multi_projector(projector).name
        return await self._invoke(
            projector_actor_id(name),
            "Status",
            None,
            messages.parse_status_reply,
            actor_type=PROJECTOR_ACTOR_TYPE,
        )

    async def _invoke(
        self,
        actor_id: str,
        method: str,
        body: bytes | None,
        parse: Callable[[bytes], T],
        *,
        actor_type: str = AGGREGATE_ACTOR_TYPE,
        timeout: timedelta | None = None,
    ) -> T:
        """Call `method` on the actor and parse its reply, retrying transport faults.

        A fault is anything that is not a whole reply from our actor: no connection, a
        timeout, a non-2xx status, or a reply that is empty, cut short or not JSON.
        Retrying a command is safe: its command id (the causation id) is applied once.
        """
        with telemetry.actor_call(actor_type, actor_id, method):
            retry = self.transient_retry
            attempt = 1
            while True:
                try:
                    reply = await self._call(
                        actor_id, method, body, actor_type=actor_type, timeout=timeout
                    )
                    return parse(reply)
                except SekibanError:
                    # The actor's answer, even a `ConsistencyTimeoutError` (a TimeoutError).
                    raise
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

    async def _call(
        self,
        actor_id: str,
        method: str,
        body: bytes | None,
        *,
        actor_type: str = AGGREGATE_ACTOR_TYPE,
        timeout: timedelta | None = None,
    ) -> bytes:
        """One actor call through the sidecar; the raw reply body of a 2xx answer.

        The call the Dapr SDK's `DaprActorHttpClient.invoke_method` makes, with this
        executor's endpoint, token and timeout (or `timeout`). Raises
        `SidecarStatusError` otherwise.
        """
        url = f"{self.endpoint}/v1.0/actors/{actor_type}/{actor_id}/method/{method}"
        return await call_sidecar("PUT", url, body, self.api_token, timeout or self.timeout)


async def call_sidecar(
    method: str, url: str, body: bytes | None, api_token: str, timeout: timedelta
) -> bytes:
    """One HTTP request to daprd; the reply body of a 2xx answer, else
    `SidecarStatusError`. Sends `api_token` as `dapr-api-token` unless it is ""."""
    headers = {"Content-Type": "application/json"}
    if api_token:
        headers["dapr-api-token"] = api_token
    # daprd passes `traceparent` on to the actor host: its spans join this trace.
    telemetry.inject(headers)
    client_timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.request(method, url, data=body or b"", headers=headers) as response,
    ):
        reply = await response.read()
        if 200 <= response.status < 300:
            return reply
        raise SidecarStatusError(response.status, response.reason or "", reply)


def endpoint_from_environment() -> str:
    """daprd's HTTP endpoint as every Dapr app finds it: `DAPR_HTTP_ENDPOINT`, else
    `http://$DAPR_RUNTIME_HOST:$DAPR_HTTP_PORT` (127.0.0.1 and 3500 when unset)."""
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
