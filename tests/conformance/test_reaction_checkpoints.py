"""Reactions keep their checkpoints in the projection store beside every event store: a
runner started again resumes after the last event it handled and sends nothing twice."""

from __future__ import annotations

import asyncio
import uuid

from examples.bank import AccountOpened, DepositMoney, OpenAccount, bank_domain
from sekiban import Event, EventPayload, SekibanExecutor
from sekiban.reactions import REACTION_TYPES, Reaction, ReactionRunner
from tests.conformance.backends import Stores


class WelcomeBonus(Reaction):
    """Every new account gets 10; remembers the accounts it handled."""

    event_types = (AccountOpened,)

    def __init__(self) -> None:
        self.handled: list[uuid.UUID] = []

    def react(self, event: Event[EventPayload]) -> DepositMoney:
        self.handled.append(event.partition_keys.aggregate_id)
        return DepositMoney(account_id=event.partition_keys.aggregate_id, amount=10)


async def run_until(runner: ReactionRunner, reaction: WelcomeBonus, count: int) -> None:
    """Run rounds until `reaction` handled `count` events: stores with a read delay
    (Cosmos DB's safe window, PostgreSQL transactions in flight) may need several."""
    for _ in range(300):
        await runner.run_until_idle()
        if len(reaction.handled) >= count:
            return
        await asyncio.sleep(0.05)


async def test_a_restarted_runner_resumes_from_its_stored_checkpoint(stores: Stores) -> None:
    domain = bank_domain().register(*REACTION_TYPES)
    executor = SekibanExecutor(domain, stores.events)
    first_accounts = [await executor.command(OpenAccount(owner=f"a{i}")) for i in range(3)]
    first = WelcomeBonus()
    await run_until(ReactionRunner(executor, first, store=stores.projections), first, 3)
    assert sorted(first.handled) == sorted(r.partition_keys.aggregate_id for r in first_accounts)
    assert "reaction:welcome-bonus" in await stores.projections.names()

    later = await executor.command(OpenAccount(owner="late"))
    second = WelcomeBonus()
    await run_until(ReactionRunner(executor, second, store=stores.projections), second, 1)
    assert second.handled == [later.partition_keys.aggregate_id]
