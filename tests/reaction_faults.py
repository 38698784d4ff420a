"""Reactions for the `sekiban reactions run` fault tests
(tests/integration/test_reactions_cli_faults.py), configured through the environment
of the runner process:

- `SEKIBAN_TEST_DIR`: where `deliveries.log` (one line per side effect delivered),
  `attempts.log` (one line per handler attempt of `Picky`) and the `broken` flag live;
- `SEKIBAN_TEST_KILL_AT`: the process SIGKILLs itself right after writing this line of
  `deliveries.log`, before the delivery's outcome is recorded (unset: never).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from examples.bank import AccountOpened, DepositMoney, MoneyDeposited, bank_domain
from sekiban import DomainTypes, Event, EventPayload
from sekiban.reactions import REACTION_TYPES, OutboxDispatcher, PendingEffect, Reaction, SideEffect


def domain() -> DomainTypes:
    return bank_domain().register(*REACTION_TYPES)


def _directory() -> Path:
    return Path(os.environ["SEKIBAN_TEST_DIR"])


def _append_line(path: Path, line: str) -> int:
    """Append `line` durably; the number of lines in the file now."""
    with path.open("a") as file:
        file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())
    with path.open() as file:
        return sum(1 for _ in file)


class WelcomeBonus(Reaction):
    """Every new account gets 10 (applied once, however often it is handed over)."""

    event_types = (AccountOpened,)

    def react(self, event: Event[EventPayload]) -> DepositMoney:
        return DepositMoney(account_id=event.partition_keys.aggregate_id, amount=10)


class WelcomeMail(Reaction):
    """Every new account gets a mail, through the outbox."""

    event_types = (AccountOpened,)

    def react(self, event: Event[EventPayload]) -> SideEffect:
        return SideEffect(kind="email", data={"to": event.payload.owner})  # type: ignore[attr-defined]


async def record_delivery(effect: PendingEffect) -> None:
    lines = _append_line(_directory() / "deliveries.log", effect.effect_id)
    if str(lines) == os.environ.get("SEKIBAN_TEST_KILL_AT"):
        os.kill(os.getpid(), signal.SIGKILL)  # delivered, its outcome not yet recorded


class Picky(Reaction):
    """Pays the bonus, and books deposits; raises on the accounts of owners named
    `bad-...` while the `broken` file exists. Records each attempt."""

    event_types = (AccountOpened, MoneyDeposited)

    def react(self, event: Event[EventPayload]) -> DepositMoney | None:
        account = event.partition_keys.aggregate_id
        _append_line(_directory() / "attempts.log", f"{event.id} {account}")
        if (_directory() / "broken").exists() and str(account) in _bad_accounts():
            raise RuntimeError(f"cannot handle account {account}")
        if isinstance(event.payload, AccountOpened):
            return DepositMoney(account_id=account, amount=10)
        return None


def _bad_accounts() -> set[str]:
    path = _directory() / "bad-accounts"
    return set(path.read_text().split()) if path.exists() else set()


def mail_reactions() -> list[Reaction | OutboxDispatcher]:
    return [WelcomeBonus(), WelcomeMail(), OutboxDispatcher({"email": record_delivery})]


def bonus_reactions() -> list[Reaction]:
    return [WelcomeBonus()]


def picky_reactions() -> list[Reaction]:
    return [Picky()]
