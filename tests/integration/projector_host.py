"""The bank domain served as Dapr actors, with projector actors that save their state
every SEKIBAN_PROJECTION_PERSIST_EVERY events (default 10 000) and every
SEKIBAN_PROJECTION_FLUSH_SECONDS (default 30) when events were applied since, with
values of at most SEKIBAN_PROJECTION_STATE_BYTES in actor state (larger states in
chunks); otherwise configured like examples/dapr_host.py.
`PaddedAnswerQuery` answers with as many bytes as it is asked for, to probe how large an
answer daprd carries."""

from __future__ import annotations

import os
from datetime import timedelta

from sekiban import Query
from sekiban.core.domain_types import DomainTypes
from sekiban.dapr.app import create_actor_app
from sekiban.dapr.projection_state import DEFAULT_MAX_ACTOR_STATE_BYTES
from sekiban.examples.bank import AccountList, bank_domain
from sekiban.projections import ProjectionOptions
from sekiban.settings import SekibanSettings
from sekiban.stores import EventStore

settings = SekibanSettings()


class PaddedAnswerQuery(Query[str]):
    """`size` bytes of answer, whatever the state."""

    multi_projector = AccountList
    size: int

    def handle(self, state: object) -> str:
        return "x" * self.size


def domain() -> DomainTypes:
    return bank_domain().register(PaddedAnswerQuery)


async def open_event_store() -> EventStore:
    return (await settings.open_store()).events


app = create_actor_app(
    domain(),
    open_event_store,
    snapshot_config=settings.snapshot_configuration(),
    actor_idle_timeout=settings.actor_idle_timeout,
    projection_options=ProjectionOptions(
        persist_every=int(os.environ.get("SEKIBAN_PROJECTION_PERSIST_EVERY", "10000"))
    ),
    max_projection_state_bytes=int(
        os.environ.get("SEKIBAN_PROJECTION_STATE_BYTES", str(DEFAULT_MAX_ACTOR_STATE_BYTES))
    ),
    projection_flush_interval=timedelta(
        seconds=float(os.environ.get("SEKIBAN_PROJECTION_FLUSH_SECONDS", "30"))
    ),
)
