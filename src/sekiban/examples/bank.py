"""A sample domain: bank accounts that open, take deposits and withdrawals, and close."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from pydantic import Field

from sekiban import (
    Aggregate,
    AggregateListProjector,
    AggregatePayload,
    AggregateProjector,
    Command,
    CommandContext,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    ListQuery,
    PartitionKeys,
)

# --- events ---------------------------------------------------------------


class AccountOpened(EventPayload):
    owner: str = Field(min_length=1, max_length=100)


class MoneyDeposited(EventPayload):
    amount: int = Field(gt=0)


class MoneyWithdrawn(EventPayload):
    amount: int = Field(gt=0)


class AccountClosed(EventPayload):
    reason: str = ""


# --- aggregate payloads ---------------------------------------------------


class ActiveAccount(AggregatePayload):
    owner: str
    balance: int = 0
    transactions: int = 0


class ClosedAccount(AggregatePayload):
    owner: str
    reason: str


# --- projector ------------------------------------------------------------


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
            case ActiveAccount(), MoneyWithdrawn(amount=amount):
                return payload.evolve(
                    balance=payload.balance - amount, transactions=payload.transactions + 1
                )
            case ActiveAccount(owner=owner), AccountClosed(reason=reason):
                return ClosedAccount(owner=owner, reason=reason)
        return payload


# --- commands -------------------------------------------------------------


class InsufficientFundsError(ValueError):
    """A withdrawal larger than the balance."""


class OpenAccount(Command):
    projector = AccountProjector
    required_payload = (EmptyAggregatePayload,)

    owner: str = Field(min_length=1, max_length=100)
    account_id: uuid.UUID = Field(default_factory=uuid.uuid4)

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.account_id, AccountProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return AccountOpened(owner=self.owner)


class _AccountCommand(Command):
    account_id: uuid.UUID

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.account_id, AccountProjector.name)


class DepositMoney(_AccountCommand):
    projector = AccountProjector
    required_payload = (ActiveAccount,)

    amount: int = Field(gt=0)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return MoneyDeposited(amount=self.amount)


class WithdrawMoney(_AccountCommand):
    projector = AccountProjector
    required_payload = (ActiveAccount,)

    amount: int = Field(gt=0)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        account = context.payload
        assert isinstance(account, ActiveAccount)
        if account.balance < self.amount:
            raise InsufficientFundsError(f"balance {account.balance} is less than {self.amount}")
        return MoneyWithdrawn(amount=self.amount)


class CloseAccount(_AccountCommand):
    projector = AccountProjector
    required_payload = (ActiveAccount,)

    reason: str = ""

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        account = context.payload
        assert isinstance(account, ActiveAccount)
        events: list[EventPayload] = []
        if account.balance:
            events.append(MoneyWithdrawn(amount=account.balance))
        events.append(AccountClosed(reason=self.reason))
        return events


# --- queries --------------------------------------------------------------

AccountList = AggregateListProjector.of(AccountProjector)


class ActiveAccountsQuery(ListQuery[Aggregate[AggregatePayload]]):
    """Open accounts with at least `min_balance`, richest first."""

    multi_projector = AccountList

    min_balance: int = 0

    def filter(
        self, state: dict[PartitionKeys, Aggregate[AggregatePayload]]
    ) -> Iterable[Aggregate[AggregatePayload]]:
        return (
            a
            for a in state.values()
            if isinstance(a.payload, ActiveAccount) and a.payload.balance >= self.min_balance
        )

    def sort(self, items: list[Aggregate[AggregatePayload]]) -> list[Aggregate[AggregatePayload]]:
        return sorted(items, key=lambda a: (-_balance(a), str(a.partition_keys)))


def _balance(aggregate: Aggregate[AggregatePayload]) -> int:
    payload = aggregate.payload
    return payload.balance if isinstance(payload, ActiveAccount) else 0


def bank_domain() -> DomainTypes:
    """The registry of every type in the bank domain."""
    return DomainTypes(
        AccountOpened,
        MoneyDeposited,
        MoneyWithdrawn,
        AccountClosed,
        ActiveAccount,
        ClosedAccount,
        AccountProjector,
        AccountList,
        OpenAccount,
        DepositMoney,
        WithdrawMoney,
        CloseAccount,
        ActiveAccountsQuery,
    )
