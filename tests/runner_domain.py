"""A domain for the subscription runner's tests, importable by a `sekiban projections
run` subprocess as `tests.runner_domain:domain`.

`AppliedEvents` records the id of every event it applies, in order, so a test sees at
once whether an event was skipped, applied twice or out of order. `Picky` reads the
same events and raises on the amount named by SEKIBAN_TEST_FAIL_AMOUNT (or the class
attribute `fail_on`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import ClassVar

from examples.bank import MoneyDeposited, bank_domain
from sekiban import DomainTypes, Event, EventPayload, MultiProjector, PartitionKeys, StoredEvent
from sekiban.stores import EventStore
from tests.support import stored_events

GROUP = "ticks"
OTHER_GROUP = "elsewhere"


class AppliedEvents(MultiProjector[list[str]]):
    """The ids of the events applied, in the order applied."""

    groups: ClassVar = (GROUP,)
    event_types: ClassVar = (MoneyDeposited,)

    def initial_state(self) -> list[str]:
        return []

    def project(self, state: list[str], event: Event[EventPayload]) -> list[str]:
        return [*state, str(event.id)]


class Picky(MultiProjector[int]):
    """Sums amounts; raises on the amount it is told to fail on."""

    groups: ClassVar = (GROUP,)
    event_types: ClassVar = (MoneyDeposited,)
    fail_on: ClassVar[int | None] = None

    def initial_state(self) -> int:
        return 0

    def project(self, state: int, event: Event[EventPayload]) -> int:
        assert isinstance(event.payload, MoneyDeposited)
        fail_on = self.fail_on or int(os.environ.get("SEKIBAN_TEST_FAIL_AMOUNT", "0"))
        if event.payload.amount == fail_on:
            raise RuntimeError(f"no amount {fail_on}, please")
        return state + event.payload.amount


def domain() -> DomainTypes:
    return bank_domain().register(AppliedEvents, Picky)


def deposits(keys: PartitionKeys, first_version: int, amounts: Iterable[int]) -> list[StoredEvent]:
    """Deposit events of `amounts` at versions `first_version ...` of one stream."""
    return [
        event
        for version, amount in enumerate(amounts, first_version)
        for event in stored_events(keys, version, 1, payload=f'{{"amount":{amount}}}')
    ]


async def append_deposits(
    store: EventStore, streams: int, per_stream: int, *, group: str = GROUP, amount: int = 1
) -> list[str]:
    """`streams` streams of `per_stream` deposits each, one append per event; the ids
    of the events in append order."""
    ids = []
    for _ in range(streams):
        keys = PartitionKeys.generate(group)
        for version in range(1, per_stream + 1):
            (event,) = deposits(keys, version, [amount])
            await store.append([event], version - 1)
            ids.append(event.id)
    return ids


async def all_ids(store: EventStore, group: str = GROUP) -> list[str]:
    """The ids of the group's events in global order: a full replay's answer."""
    return [
        e.id async for batch in store.read_all(0) for e in batch if e.partition_keys.group == group
    ]
