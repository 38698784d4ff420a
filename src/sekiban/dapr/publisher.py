"""Fan-out through Dapr pub/sub: publish events to a topic from a `ReactionRunner`.

Other services subscribe to the topic with Dapr (any pub/sub component) instead of
reading the event store. Delivery is at least once, like a reaction's: the position is
checkpointed after each publish, so a crash in between publishes an event again. Each
message carries the event's id as its CloudEvent `id`: consumers deduplicate on it.
Brokers do not all keep the publish order; the per-stream `version` and the
`sortable_unique_id` are in the message for consumers that need order.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from sekiban.core.events import Event, EventPayload
from sekiban.dapr.executor import (
    SidecarStatusError,
    call_sidecar,
    describe_fault,
    endpoint_from_environment,
)
from sekiban.errors import DaprUnavailableError
from sekiban.reactions.reaction import check_name
from sekiban.reactions.subscriber import DueWork, Host


class DaprEventPublisher:
    """Publishes the events it reads to `topic` of the Dapr pub/sub component `pubsub`.

    Host it in a `ReactionRunner` (checkpoint `reaction:<name>`, default
    `publish-<pubsub>-<topic>`); `groups`/`event_types` choose the events, as on a
    reaction. The message body is the event as `StoredEvent.to_dict()` without the
    global position (JSON, the payload as JSON text; `StoredEvent.from_dict` reads
    it), published with the CloudEvent `id` = event id, `type` = event type and
    `subject` = partition keys. A publish daprd refuses raises `DaprUnavailableError`:
    retried with backoff, then parked, as any handler.
    """

    def __init__(
        self,
        pubsub: str,
        topic: str,
        *,
        name: str | None = None,
        groups: Collection[str] | None = None,
        event_types: Collection[type[EventPayload]] | None = None,
        dapr_http_endpoint: str | None = None,
        api_token: str | None = None,
        timeout: timedelta = timedelta(seconds=30),
    ) -> None:
        self.pubsub = pubsub
        self.topic = topic
        self.name = check_name(name or f"publish-{pubsub}-{topic}")
        self.groups = groups
        self.event_types = event_types
        self.endpoint = (dapr_http_endpoint or endpoint_from_environment()).rstrip("/")
        self.api_token = os.environ.get("DAPR_API_TOKEN", "") if api_token is None else api_token
        self.timeout = timeout

    def sequence_key(self, event: Event[EventPayload]) -> str | None:
        """Events of one aggregate are published in order: while one is parked, the
        later ones of its stream wait behind it."""
        return str(event.partition_keys)

    async def handle(self, event: Event[EventPayload], host: Host) -> None:
        stored = host.serializer.to_stored(event)
        # A subscriber is handed the event, not its global position: leave it out
        # rather than send a null.
        message = {k: v for k, v in stored.to_dict().items() if k != "position"}
        body = json.dumps(message, separators=(",", ":")).encode()
        # Overrides of the CloudEvent envelope daprd wraps the body in.
        query = urllib.parse.urlencode(
            {
                "metadata.cloudevent.id": stored.id,
                "metadata.cloudevent.type": stored.event_type,
                "metadata.cloudevent.subject": str(stored.partition_keys),
            }
        )
        path = "/".join(urllib.parse.quote(p, safe="") for p in (self.pubsub, self.topic))
        url = f"{self.endpoint}/v1.0/publish/{path}?{query}"
        try:
            await call_sidecar("POST", url, body, self.api_token, self.timeout)
        except (TimeoutError, aiohttp.ClientError, SidecarStatusError) as error:
            raise DaprUnavailableError(
                f"publishing event {stored.id} to {self.pubsub}/{self.topic} through "
                f"{self.endpoint} failed: {describe_fault(error)}"
            ) from error

    def due(self, now: datetime, host: Host) -> list[DueWork]:
        return []

    def dump(self) -> dict[str, Any]:
        return {}

    def load(self, data: dict[str, Any]) -> None:
        return None
