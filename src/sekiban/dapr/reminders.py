"""Actor reminders through daprd's HTTP API, from any process that has a sidecar.

Registering a reminder this way does not activate the actor; daprd stores it in the
Dapr scheduler, which needs to run (`--scheduler-host-address`): without it daprd
answers every registration with HTTP 500 (`ERR_ACTOR_REMINDER_CREATE`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Protocol

import aiohttp
from dapr.actor.runtime._reminder_data import ActorReminderData
from dapr.serializers import DefaultJSONSerializer

from sekiban.dapr.executor import (
    SidecarStatusError,
    call_sidecar,
    describe_fault,
    endpoint_from_environment,
)
from sekiban.errors import DaprUnavailableError


class Reminders(Protocol):
    """Registers and unregisters actor reminders (a fake one in tests)."""

    async def register(
        self,
        actor_type: str,
        actor_id: str,
        name: str,
        data: bytes,
        due_time: timedelta,
        period: timedelta,
    ) -> None:
        """Create or replace reminder `name` of the actor: it fires after `due_time`,
        then every `period` until unregistered, handing `data` to the actor."""

    async def unregister(self, actor_type: str, actor_id: str, name: str) -> None:
        """Delete reminder `name` of the actor; nothing happens if there is none."""


class DaprReminders:
    """`Reminders` through one daprd's actor API.

    `dapr_http_endpoint` and `api_token` default as on `DaprSekibanExecutor`
    (`DAPR_HTTP_ENDPOINT` / `DAPR_HTTP_PORT`, `DAPR_API_TOKEN`). A failed request
    raises `DaprUnavailableError` (the caller retries: both calls are idempotent).
    """

    def __init__(
        self,
        dapr_http_endpoint: str | None = None,
        *,
        api_token: str | None = None,
        timeout: timedelta = timedelta(seconds=30),
    ) -> None:
        self.endpoint = (dapr_http_endpoint or endpoint_from_environment()).rstrip("/")
        self.api_token = os.environ.get("DAPR_API_TOKEN", "") if api_token is None else api_token
        self.timeout = timeout

    async def register(
        self,
        actor_type: str,
        actor_id: str,
        name: str,
        data: bytes,
        due_time: timedelta,
        period: timedelta,
    ) -> None:
        # The SDK's own body (data base64-encoded, durations in Dapr's spelling), so
        # the actor's SDK reads it back exactly as if the actor had registered it.
        body = DefaultJSONSerializer().serialize(
            ActorReminderData(name, data, due_time, period).as_dict()
        )
        await self._request("PUT", actor_type, actor_id, name, body)

    async def unregister(self, actor_type: str, actor_id: str, name: str) -> None:
        await self._request("DELETE", actor_type, actor_id, name, None)

    async def _request(
        self, method: str, actor_type: str, actor_id: str, name: str, body: bytes | None
    ) -> None:
        url = f"{self.endpoint}/v1.0/actors/{actor_type}/{actor_id}/reminders/{name}"
        try:
            await call_sidecar(method, url, body, self.api_token, self.timeout)
        except (TimeoutError, aiohttp.ClientError, SidecarStatusError) as error:
            raise DaprUnavailableError(
                f"{method} reminder {name} of actor {actor_type}/{actor_id} through "
                f"{self.endpoint} failed: {describe_fault(error)}. Reminders need the "
                "Dapr scheduler (daprd --scheduler-host-address)"
            ) from error
