"""The benchmark domain: a bank account in sekiban, and its twin in `eventsourcing`.

Both frameworks keep the same state (owner, balance, number of transactions) and store
the same events (an "opened" event, then deposits of one int), so a comparison measures
the frameworks, not the domains. The account mirrors `examples.bank`, which is not part
of the installed package.

`LedgerAccount` is an account that keeps every transaction: its payload, and so its
snapshot, grows with the history (the snapshot-size benchmark).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import eventsourcing.application as es_application
import eventsourcing.domain as es_domain
from pydantic import BaseModel, Field

from sekiban import (
    AggregatePayload,
    AggregateProjector,
    Command,
    CommandContext,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    PartitionKeys,
)

SNAPSHOT_EVERY = 100
"""Snapshot interval of both frameworks in the command workloads."""

# --- sekiban ------------------------------------------------------------------------


class AccountOpened(EventPayload):
    owner: str = Field(min_length=1, max_length=100)


class MoneyDeposited(EventPayload):
    amount: int = Field(gt=0)


class ActiveAccount(AggregatePayload):
    owner: str
    balance: int = 0
    transactions: int = 0


class Transaction(BaseModel):
    amount: int
    at: datetime


class LedgerAccount(AggregatePayload):
    """An account that keeps its whole history: a snapshot that grows with it."""

    owner: str
    balance: int = 0
    transactions: list[Transaction] = Field(default_factory=list)


class AccountProjector(AggregateProjector):
    name = "account"
    version = "1"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        match payload, event.payload:
            case EmptyAggregatePayload(), AccountOpened(owner=owner):
                return ActiveAccount(owner=owner)
            case ActiveAccount(), MoneyDeposited(amount=amount):
                return payload.evolve(
                    balance=payload.balance + amount, transactions=payload.transactions + 1
                )
        return payload


def account_keys(account_id: uuid.UUID) -> PartitionKeys:
    return PartitionKeys.existing(account_id, AccountProjector.name)


class OpenAccount(Command):
    projector = AccountProjector
    required_payload = (EmptyAggregatePayload,)

    owner: str = Field(min_length=1, max_length=100)
    account_id: uuid.UUID = Field(default_factory=uuid.uuid4)

    def partition_keys(self) -> PartitionKeys:
        return account_keys(self.account_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return AccountOpened(owner=self.owner)


class DepositMany(Command):
    """`count` deposits of `amount` in one command."""

    projector = AccountProjector
    required_payload = (ActiveAccount,)

    account_id: uuid.UUID
    amount: int = Field(gt=0)
    count: int = Field(default=1, ge=1)

    def partition_keys(self) -> PartitionKeys:
        return account_keys(self.account_id)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        return [MoneyDeposited(amount=self.amount)] * self.count


def bench_domain(*extra: type) -> DomainTypes:
    """Every sekiban type the benchmarks use, and `extra` ones (a benchmark's own)."""
    return DomainTypes(
        AccountOpened,
        MoneyDeposited,
        ActiveAccount,
        LedgerAccount,
        AccountProjector,
        OpenAccount,
        DepositMany,
        *extra,
    )


# --- eventsourcing ------------------------------------------------------------------


class Account(es_domain.Aggregate):
    """The eventsourcing twin of `ActiveAccount`."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0
        self.transactions = 0

    @es_domain.event("Deposited")
    def deposit(self, amount: int) -> None:
        self.balance += amount
        self.transactions += 1


class Bank(es_application.Application[uuid.UUID]):
    """An eventsourcing application of accounts; with snapshotting enabled it takes
    snapshots only when asked (`take_snapshot`)."""


class SnapshottingBank(Bank):
    """A `Bank` that snapshots every `SNAPSHOT_EVERY` events by itself, as sekiban's
    count strategy does, when snapshotting is enabled."""

    snapshotting_intervals = {Account: SNAPSHOT_EVERY}
