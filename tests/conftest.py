"""OpenTelemetry for the whole test session: set once, captured per test on request.

OpenTelemetry lets a process set its global tracer and meter providers only once, so
this session sets them before any test runs (a page of docs/ that sets its own is then
ignored, as OpenTelemetry ignores any second one). Spans are sampled only while a test
holds the `otel` fixture, so other tests pay for non-recording spans only; metrics are
cumulative, and `otel` reports what changed since the test began.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes


class CaptureSampler(Sampler):
    """Samples every span while `on`, none otherwise."""

    on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        # The SDK gives the span the attributes the sampler returns.
        decision = Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP
        return SamplingResult(decision, attributes if self.on else None)

    def get_description(self) -> str:
        return "CaptureSampler"


class Telemetry:
    """What sekiban recorded during one test."""

    def __init__(self, exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self.exporter, self.reader = exporter, reader
        self._baseline = self._points()

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, oldest first; only those called `name` if given."""
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        (found,) = self.spans(name)
        return found

    def children(self, parent: ReadableSpan) -> list[str]:
        assert parent.context is not None
        return [
            s.name
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]

    def _points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], Any]:
        points: dict[tuple[str, frozenset[tuple[str, Any]]], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset((point.attributes or {}).items()))
                        points[key] = point
        return points

    def counted(self, name: str, **attributes: Any) -> float:
        """The increase of counter `name` over points with these attributes."""
        return sum(
            point.value - _value(self._baseline.get(key))
            for key, point in self._points().items()
            if key[0] == name and attributes.items() <= dict(key[1]).items()
        )

    def recorded(self, name: str, **attributes: Any) -> tuple[int, float]:
        """(count, sum) added to histogram `name` over points with these attributes."""
        count, total = 0, 0.0
        for key, point in self._points().items():
            if key[0] == name and attributes.items() <= dict(key[1]).items():
                before = self._baseline.get(key)
                count += point.count - (before.count if before else 0)
                total += point.sum - (before.sum if before else 0)
        return count, total


def _value(point: Any) -> float:
    return point.value if point is not None else 0


_sampler = CaptureSampler()
_exporter = InMemorySpanExporter()
_reader = InMemoryMetricReader()


@pytest.fixture(autouse=True, scope="session")
def _otel_providers() -> None:
    provider = TracerProvider(sampler=_sampler)
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """Capture the spans and metrics sekiban records during the test."""
    _exporter.clear()
    _sampler.on = True
    try:
        yield Telemetry(_exporter, _reader)
    finally:
        _sampler.on = False
        _exporter.clear()
