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
