"""OpenTelemetry spans and metrics, through the OpenTelemetry API only (extra `otel`).

sekiban never configures OpenTelemetry: it asks the global tracer and meter providers
the application set (`opentelemetry.trace.set_tracer_provider`, and the same for
metrics) on every operation. Three cases, from cheapest:

- `opentelemetry-api` is not installed: every helper returns one shared no-op object.
- The API is installed but no SDK provider was set: the same, after one look at the
  global provider (no span, no context switch, no attribute dictionaries).
- A provider is set: spans and measurements as docs/observability.md lists them.

Span and attribute names use a `sekiban.` prefix in the style of the semantic
conventions; errors are recorded on the span (`record_exception`, status ERROR).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sekiban.core.partition_keys import PartitionKeys

try:
    from opentelemetry import context, metrics, propagate, trace
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.metrics import _internal as _metrics_internal
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind
except ImportError:  # the `otel` extra is not installed: every helper is a no-op
    ENABLED = False
else:
    ENABLED = True

if TYPE_CHECKING:
    from sekiban.loading import LoadStatistics

SCOPE = "sekiban"

# Speed trick, fenced here: until a provider is set, the API's `get_tracer_provider()`
# and `get_meter_provider()` look in os.environ on every call (~1 µs each, several per
# command). The module globals they return once set (`opentelemetry.trace.
# _TRACER_PROVIDER`, `opentelemetry.metrics._internal._METER_PROVIDER`) are None until
# then, so a None there means "nothing to record" without that look. Used only when both
# globals exist and no provider is chosen by environment variable; otherwise the public
# getters decide (tests/unit/test_telemetry.py compares the two).
_FAST_OFF = (
    ENABLED
    and hasattr(trace, "_TRACER_PROVIDER")
    and hasattr(_metrics_internal, "_METER_PROVIDER")
    and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ
    and "OTEL_PYTHON_METER_PROVIDER" not in os.environ
)


class _NoSpan:
    """Stands in for a span when nothing is recorded: a context manager doing nothing."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def add_event(self, name: str, attributes: Any = None) -> None:
        return None

    def is_recording(self) -> bool:
        return False


NO_SPAN = _NoSpan()
# What the helpers below yield: a real `opentelemetry.trace.Span` or `NO_SPAN`.
Span = Any


@dataclass(frozen=True, slots=True)
class _Instruments:
    commands: Any
    retries: Any
    conflicts: Any
    snapshot_loads: Any
    snapshots_taken: Any
    events_replayed: Any
    projection_lag: Any
    actor_call_retries: Any


# The global providers of OpenTelemetry are set once per process; these remember the
# tracer and instruments made from the provider seen last, so a call costs one lookup.
_tracer_cache: tuple[object, Any] = (None, None)
_instruments_cache: tuple[object, _Instruments | None] = (None, None)


def _tracer() -> Any:
    """The sekiban tracer of the configured provider, or None when none is set."""
    global _tracer_cache
    if not ENABLED or (_FAST_OFF and trace._TRACER_PROVIDER is None):
        return None
    provider = trace.get_tracer_provider()
    seen, tracer = _tracer_cache
    if provider is not seen:
        off = isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)
        tracer = None if off else provider.get_tracer(SCOPE)
        _tracer_cache = (provider, tracer)
    return tracer


def _instruments() -> _Instruments | None:
    """The sekiban instruments of the configured meter provider, or None."""
    global _instruments_cache
    if not ENABLED or (_FAST_OFF and _metrics_internal._METER_PROVIDER is None):
        return None
    provider = metrics.get_meter_provider()
    seen, instruments = _instruments_cache
    if provider is not seen:
        # The API's stand-in until a provider is set is private: known by its name.
        off = type(provider).__name__ == "_ProxyMeterProvider" or isinstance(
            provider, NoOpMeterProvider
        )
        instruments = None if off else _create_instruments(provider.get_meter(SCOPE))
        _instruments_cache = (provider, instruments)
    return instruments


def _create_instruments(meter: Any) -> _Instruments:
    return _Instruments(
        commands=meter.create_counter(
            "sekiban.commands", "{command}", "Commands executed, by type and outcome"
        ),
        retries=meter.create_counter(
            "sekiban.command.retries", "{retry}", "Commands decided again, by reason"
        ),
        conflicts=meter.create_counter(
            "sekiban.command.conflicts", "{conflict}", "Appends refused: the stream moved on"
        ),
        snapshot_loads=meter.create_counter(
            "sekiban.snapshot.loads", "{load}", "Loads by snapshot result: hit, miss, rejected"
        ),
        snapshots_taken=meter.create_counter(
            "sekiban.snapshots.taken", "{snapshot}", "Snapshots taken, by outcome"
        ),
        events_replayed=meter.create_histogram(
            "sekiban.load.events_replayed", "{event}", "Events replayed per aggregate load"
        ),
        projection_lag=meter.create_histogram(
            "sekiban.projection.lag", "{event}", "Events a projection was behind at a query"
        ),
        actor_call_retries=meter.create_counter(
            "sekiban.dapr.retries", "{retry}", "Actor calls tried again after a fault"
        ),
    )


def enabled() -> bool:
    """Whether a tracer or meter provider is configured (so telemetry is recorded)."""
    return _tracer() is not None or _instruments() is not None


@contextmanager
def _span(name: str, attributes: dict[str, Any], kind: Any = None) -> Iterator[Span]:
    tracer = _tracer()
    if tracer is None:
        yield NO_SPAN
        return
    with tracer.start_as_current_span(
        name, kind=kind or SpanKind.INTERNAL, attributes=attributes
    ) as span:
        yield span


def _keys(projector_name: str, keys: PartitionKeys) -> dict[str, Any]:
    return {
        "sekiban.aggregate.projector": projector_name,
        "sekiban.aggregate.partition_keys": str(keys),
        "sekiban.aggregate.id": str(keys.aggregate_id),
        "sekiban.aggregate.group": keys.group,
        "sekiban.aggregate.root_partition_key": keys.root_partition_key,
    }


def span(name: str, attributes: dict[str, Any] | None = None) -> AbstractContextManager[Span]:
    """An internal span `name` (a child of the current one), or `NO_SPAN`."""
    if not ENABLED or _tracer() is None:
        return NO_SPAN
    return _span(name, attributes or {})


def command(
    command_type: str, projector_name: str, keys: PartitionKeys, command_id: str
) -> AbstractContextManager[Span]:
    """The `sekiban.command` span of one command, from a caller's point of view."""
    if not ENABLED or _tracer() is None:
        return NO_SPAN
    attributes = {
        "sekiban.command.type": command_type,
        "sekiban.command.id": command_id,
        **_keys(projector_name, keys),
    }
    return _span("sekiban.command", attributes)


def command_applied(span: Span, events: int, version: int) -> None:
    """Note on `span` what a command appended and the version it left."""
    span.set_attribute("sekiban.events.appended", events)
    span.set_attribute("sekiban.aggregate.version", version)


def count_command(command_type: str, error: BaseException | None) -> None:
    """Count one command by type and outcome ("ok" or "error", with `error.type`)."""
    instruments = _instruments()
    if instruments is None:
        return
    attributes = {"sekiban.command.type": command_type, "sekiban.command.outcome": "ok"}
    if error is not None:
        attributes["sekiban.command.outcome"] = "error"
        attributes["error.type"] = type(error).__name__
    instruments.commands.add(1, attributes)


def retrying(command_type: str, reason: str, attempt: int) -> None:
    """Record that a command is decided again (attempt `attempt`) because of `reason`:
    "conflict", "unknown-outcome" or "stale-refusal"."""
    if not ENABLED:
        return
    attributes = {"sekiban.command.type": command_type, "sekiban.retry.reason": reason}
    current = trace.get_current_span()
    current.set_attribute("sekiban.command.attempts", attempt)
    current.add_event("sekiban.retry", {**attributes, "sekiban.attempt": attempt})
    instruments = _instruments()
    if instruments is not None:
        instruments.retries.add(1, attributes)
        if reason == "conflict":
            instruments.conflicts.add(1, {"sekiban.command.type": command_type})


def load(
    projector_name: str, projector_version: str, keys: PartitionKeys
) -> AbstractContextManager[Span]:
    """The `sekiban.load` span of one aggregate load (snapshot, then delta or replay)."""
    if not ENABLED or _tracer() is None:
        return NO_SPAN
    attributes = {**_keys(projector_name, keys), "sekiban.projector.version": projector_version}
    return _span("sekiban.load", attributes)


def loaded(span: Span, projector_name: str, stats: LoadStatistics) -> None:
    """Note a finished load on `span` and in the snapshot and replay metrics."""
    rejection = stats.rejection.reason.value if stats.rejection is not None else None
    if span.is_recording():
        span.set_attribute("sekiban.snapshot.used", stats.from_snapshot)
        span.set_attribute("sekiban.events.replayed", stats.events_replayed)
        if stats.from_snapshot:
            span.set_attribute("sekiban.snapshot.version", stats.snapshot_version)
        if rejection is not None:
            span.set_attribute("sekiban.snapshot.rejection_reason", rejection)
    instruments = _instruments()
    if instruments is None:
        return
    result = "hit" if stats.from_snapshot else "rejected" if rejection else "miss"
    attributes = {"sekiban.aggregate.projector": projector_name, "sekiban.snapshot.result": result}
    if rejection is not None:
        attributes["sekiban.snapshot.rejection_reason"] = rejection
    instruments.snapshot_loads.add(1, attributes)
    instruments.events_replayed.record(
        stats.events_replayed,
        {
            "sekiban.aggregate.projector": projector_name,
            "sekiban.snapshot.used": stats.from_snapshot,
        },
    )


def snapshot_taken(projector_name: str, error: BaseException | None) -> None:
    """Count a snapshot save, "saved" or "failed" (the failure is on the current span)."""
    instruments = _instruments()
    if instruments is not None:
        outcome = "saved" if error is None else "failed"
        instruments.snapshots_taken.add(
            1, {"sekiban.aggregate.projector": projector_name, "sekiban.snapshot.outcome": outcome}
        )


def record_error(span: Span, error: BaseException) -> None:
    """Record an error that is handled (not raised through the span) on `span`."""
    if span.is_recording():
        span.record_exception(error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def projection_caught_up(projector_name: str, events: int) -> None:
    """Record how many events a projection was behind when a query caught it up."""
    instruments = _instruments()
    if instruments is not None:
        instruments.projection_lag.record(events, {"sekiban.projector.name": projector_name})


def actor_call(actor_type: str, actor_id: str, method: str) -> AbstractContextManager[Span]:
    """The client span of one Dapr actor call (all its attempts)."""
    if not ENABLED or _tracer() is None:
        return NO_SPAN
    attributes = {
        "sekiban.dapr.actor_type": actor_type,
        "sekiban.dapr.actor_id": actor_id,
        "sekiban.dapr.method": method,
    }
    return _span("sekiban.dapr.invoke", attributes, SpanKind.CLIENT)


def actor_call_retrying(method: str, attempt: int, fault: str) -> None:
    """Record a retried actor call on the current span and in `sekiban.dapr.retries`."""
    if not ENABLED:
        return
    trace.get_current_span().add_event(
        "sekiban.dapr.retry", {"sekiban.attempt": attempt, "sekiban.dapr.fault": fault}
    )
    instruments = _instruments()
    if instruments is not None:
        instruments.actor_call_retries.add(1, {"sekiban.dapr.method": method})


def actor_method(actor_type: str, actor_id: str, method: str) -> AbstractContextManager[Span]:
    """The server span of an actor method, a child of the caller's propagated span."""
    if not ENABLED or _tracer() is None:
        return NO_SPAN
    attributes = {
        "sekiban.dapr.actor_type": actor_type,
        "sekiban.dapr.actor_id": actor_id,
        "sekiban.dapr.method": method,
    }
    return _span(f"sekiban.actor.{method}", attributes, SpanKind.SERVER)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (W3C `traceparent`, `tracestate`) to `headers`."""
    if ENABLED and _tracer() is not None:
        propagate.inject(headers)


@contextmanager
def _attached(carrier: dict[str, str]) -> Iterator[None]:
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


def remote_context(headers: Iterable[tuple[bytes, bytes]]) -> AbstractContextManager[Any]:
    """Make the trace context of an incoming request's headers (ASGI raw headers) the
    current one while the request is served."""
    if not ENABLED or _tracer() is None:
        return NO_SPAN
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    if "traceparent" not in carrier:
        return NO_SPAN
    return _attached(carrier)
