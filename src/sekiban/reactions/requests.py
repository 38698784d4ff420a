"""Operator requests to a running reaction host, written as events so that the runner
(wherever it runs) acts on them in global order: `RequestParkedRetry` asks a
subscriber to hand its parked events over again."""

from __future__ import annotations

import uuid
from typing import ClassVar

from sekiban.core.aggregate import AggregatePayload
from sekiban.core.command import Command, CommandContext
from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.reactions.events import ParkedRetryRequested

REQUESTS_GROUP = "sekiban-reaction-requests"
"""The partition-key group of the request streams (one stream per subscriber name)."""

_NAMESPACE = uuid.UUID("2f9a6b1c-7e3d-4c55-b0a8-91d4e6f3a7c2")


def request_keys(name: str) -> PartitionKeys:
    """The stream of the requests made to subscriber `name`."""
    return PartitionKeys(uuid.uuid5(_NAMESPACE, name), REQUESTS_GROUP)


class ReactionRequestsProjector(AggregateProjector):
    """A request stream keeps no state: each request is acted on when read."""

    name = "sekiban-reaction-requests"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        return payload


class RequestParkedRetry(Command):
    """Ask subscriber `reaction` to hand the parked events `event_ids` (all: empty) over
    again, with the events held behind them."""

    projector: ClassVar[type[AggregateProjector]] = ReactionRequestsProjector
    reaction: str
    event_ids: list[str] = []

    def partition_keys(self) -> PartitionKeys:
        return request_keys(self.reaction)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        return [ParkedRetryRequested(reaction=self.reaction, event_ids=self.event_ids)]
