"""`sekiban reactions status` and `sekiban reactions retry` against a SQLite store."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from examples.bank import AccountOpened, OpenAccount, bank_domain
from sekiban import Event, EventPayload, SekibanExecutor
from sekiban.cli import app
from sekiban.reactions import (
    REACTION_TYPES,
    OutboxDispatcher,
    PendingEffect,
    Reaction,
    ReactionRunner,
    SideEffect,
)
from sekiban.retry import RetryPolicy
from sekiban.stores.sqlite import SqliteEventStore


class Welcome(Reaction):
    event_types = (AccountOpened,)

    def react(self, event: Event[EventPayload]) -> SideEffect:
        return SideEffect(kind="email", data={"to": event.payload.owner})  # type: ignore[attr-defined]


async def broken_mailer(effect: PendingEffect) -> None:
    raise ConnectionError("smtp down")


async def dead_letter_one(path: Path) -> None:
    store = await SqliteEventStore.open(path)
    executor = SekibanExecutor(bank_domain().register(*REACTION_TYPES), store)
    await executor.command(OpenAccount(owner="alice"))
    once = RetryPolicy(attempts=1, base_delay=timedelta(0))
    dispatcher = OutboxDispatcher({"email": broken_mailer}, retry=once)
    await ReactionRunner(executor, Welcome(), dispatcher).run_until_idle()
    await store.close()


def test_status_shows_the_dead_letter_and_retry_revives_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    asyncio.run(dead_letter_one(path))
    url = f"sqlite:///{path}"
    result = CliRunner().invoke(app, ["reactions", "status", "--store", url, "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["outbox"] == {"pending": 0, "failed": 0, "dead_lettered": 1, "delivered": 0}
    [dead] = status["undelivered"]
    assert dead["error"] == "ConnectionError: smtp down"

    text = CliRunner().invoke(app, ["reactions", "status", "--store", url])
    assert "1 dead-lettered" in text.output and dead["effect_id"] in text.output

    retried = CliRunner().invoke(app, ["reactions", "retry", "--store", url, dead["effect_id"]])
    assert retried.exit_code == 0, retried.output
    after = json.loads(
        CliRunner().invoke(app, ["reactions", "status", "--store", url, "--json"]).output
    )
    assert after["outbox"]["dead_lettered"] == 0 and after["outbox"]["pending"] == 1


def test_retry_of_an_effect_that_is_not_dead_lettered_fails(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    asyncio.run(dead_letter_one(path))
    result = CliRunner().invoke(app, ["reactions", "retry", "--store", f"sqlite:///{path}", "x"])
    assert result.exit_code == 1
    assert "not dead-lettered: x" in result.output


async def seed_order(path: Path) -> None:
    from examples.order_saga import AddStock, PlaceOrder, order_domain

    store = await SqliteEventStore.open(path)
    executor = SekibanExecutor(order_domain(), store)
    await executor.command(AddStock(sku="tea", quantity=5))
    await executor.command(
        PlaceOrder(order_id="5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d11", sku="tea", quantity=2, amount=8)
    )
    await store.close()


async def stock_left(path: Path) -> int:
    from examples.order_saga import StockProjector, order_domain, stock_keys

    store = await SqliteEventStore.open(path)
    stock = await SekibanExecutor(order_domain(), store).load_aggregate(
        StockProjector, stock_keys("tea")
    )
    await store.close()
    return stock.payload.available  # type: ignore[attr-defined,no-any-return]


def test_run_once_runs_the_saga_and_delivers_its_side_effects(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    asyncio.run(seed_order(path))
    url = f"sqlite:///{path}"
    arguments = ["reactions", "run", "--store", url, "--once"]
    arguments += ["--domain", "examples.order_saga:order_domain"]
    arguments += ["--reactions", "examples.order_saga:reactions"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert (
        "payment requested: {'order_id': '5b0c9f8e-3a5e-4f57-9a43-0a4f3c8f2d11', 'amount': 8}"
        in result.output
    )
    assert asyncio.run(stock_left(path)) == 3
    # Run again from the start (the checkpoints were in memory): nothing happens twice.
    again = CliRunner().invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert "payment requested" not in again.output
    assert asyncio.run(stock_left(path)) == 3


def test_run_refuses_something_that_is_not_a_reaction(tmp_path: Path) -> None:
    arguments = ["reactions", "run", "--store", f"sqlite:///{tmp_path / 'e.db'}", "--once"]
    arguments += ["--domain", "examples.order_saga:order_domain"]
    arguments += ["--reactions", "examples.order_saga:order_domain"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2  # a usage error
    words = " ".join(result.output.replace("│", " ").split())
    assert "must give reactions, process managers or outbox dispatchers" in words
