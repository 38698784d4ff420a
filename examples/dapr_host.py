"""The bank domain served as Dapr aggregate actors.

    uvicorn examples.dapr_host:app --port 3000   # next to `daprd --app-port 3000 ...`

Configured by `SekibanSettings` (SEKIBAN_* variables or `.env`): SEKIBAN_STORE_URL
names the event store (default `sqlite:///sekiban.db`), SEKIBAN_SNAPSHOT_STRATEGY,
SEKIBAN_SNAPSHOT_COUNT and SEKIBAN_SNAPSHOT_INTERVAL (seconds) the snapshots,
SEKIBAN_SNAPSHOT_SIGNING_KEY (`key-id:secret`) signs snapshots and refuses unsigned
ones, SEKIBAN_ACTOR_IDLE_TIMEOUT (seconds) deactivates quiet actors; see docs/settings.md.
SEKIBAN_OTEL_FILE, when set, appends the host's OpenTelemetry spans to that file as JSON
lines (needs `opentelemetry-sdk`); see docs/observability.md.
"""

from __future__ import annotations

import os

from sekiban.dapr.app import create_actor_app
from sekiban.examples.bank import bank_domain
from sekiban.settings import SekibanSettings
from sekiban.stores import EventStore

settings = SekibanSettings()


def export_spans_to(path: str) -> None:
    """Set a global tracer provider that appends every span to `path`, one JSON a line."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    def one_line(span: ReadableSpan) -> str:
        return str(span.to_json(indent=None)) + "\n"

    exporter = ConsoleSpanExporter(out=open(path, "a"), formatter=one_line)  # noqa: SIM115
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


if os.environ.get("SEKIBAN_OTEL_FILE"):
    export_spans_to(os.environ["SEKIBAN_OTEL_FILE"])


async def open_event_store() -> EventStore:
    # The actors keep snapshots in Dapr actor state: only the event store is used.
    return (await settings.open_store()).events


app = create_actor_app(
    bank_domain(),
    open_event_store,
    snapshot_config=settings.snapshot_configuration(),
    conflict_retry=settings.conflict_retry(),
    limits=settings.command_limits(),
    actor_idle_timeout=settings.actor_idle_timeout,
)
