"""The bank domain plus commands that carry arbitrary data into an event payload, for
tests of what can and cannot be stored."""

from __future__ import annotations

from typing import Any

from examples.bank import AccountProjector, ActiveAccount, _AccountCommand, bank_domain
from sekiban import AggregatePayload, CommandContext, DomainTypes, EventPayload
from sekiban.core.payload_checks import DEFAULT_MAX_DEPTH


class Item(EventPayload):
    price: float


class Measured(EventPayload):
    items: list[Item]


class Noted(EventPayload):
    data: Any


class Measure(_AccountCommand):
    projector = AccountProjector
    required_payload = (ActiveAccount,)
    prices: list[float]

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return Measured(items=[Item(price=p) for p in self.prices])


class Note(_AccountCommand):
    projector = AccountProjector
    required_payload = (ActiveAccount,)
    data: Any

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return Noted(data=self.data)


def payload_domain() -> DomainTypes:
    return bank_domain().register(Item, Measured, Noted, Measure, Note)


def nested(depth: int) -> Any:
    """`depth` lists, one inside the next, built without recursion."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


TOO_DEEP = nested(200)
JUST_DEEP_ENOUGH = nested(DEFAULT_MAX_DEPTH - 1)  # inside the payload's own object
