"""The bank's actor host (`examples.dapr_host`) on a PostgreSQL store that loses replies.

- `SEKIBAN_LOSE_REPLY_PREFIX`: an append of a command (id = causation id) with this
  prefix commits and then fails as a connection dropped after COMMIT does (once per
  id), inside the actor.
- `SEKIBAN_DIE_AFTER_COMMIT_PREFIX`: the host process exits right after an append of a
  command with this prefix commits, so the reply to the caller is lost with it. Once
  per id: a marker file in the directory `SEKIBAN_DIE_MARKERS` survives the restart.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from examples.bank import bank_domain
from examples.dapr_host import open_event_store as open_real_store
from sekiban import StoredEvent
from sekiban.dapr.app import create_actor_app
from sekiban.stores import EventStore
from tests.support import LostReplyStore

LOSE_PREFIX = os.environ.get("SEKIBAN_LOSE_REPLY_PREFIX", "")
DIE_PREFIX = os.environ.get("SEKIBAN_DIE_AFTER_COMMIT_PREFIX", "")
MARKERS = Path(os.environ.get("SEKIBAN_DIE_MARKERS", "."))


class DyingStore(LostReplyStore):
    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        await super().append(events, expected_version, command_id=command_id)
        cause = events[0].causation_id  # the command id
        if DIE_PREFIX and cause.startswith(DIE_PREFIX):
            marker = MARKERS / cause
            if not marker.exists():
                marker.touch()
                os._exit(17)  # no reply, no cleanup: as a killed host


async def open_event_store() -> EventStore:
    def lose_reply(causation_id: str) -> bool:
        return bool(LOSE_PREFIX) and causation_id.startswith(LOSE_PREFIX)

    return DyingStore(await open_real_store(), lose_reply)


app = create_actor_app(bank_domain(), open_event_store)
