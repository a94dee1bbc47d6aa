"""W3C trace context through tenantflow, with OpenTelemetry: one trace from a portal request to
the change applied in Intune, across Kafka.

- The portal continues its caller's trace (the request's ``traceparent`` header) in a server
  span per request (``serving``).
- A consumer continues each event's trace (its ``traceparent``/``tracestate`` headers: the
  CloudEvents distributed-tracing extension, binary mode) in a consumer span (``consuming``).
- An event stored meanwhile carries the current span's context (``Outbox.envelope`` asks
  ``current``), so the next service continues from there.
- The writer applies a change long after it consumed its verification, in a round with other
  changes: it keeps the context of the verification's span with the change and gives it to
  the change's outcome event.

Spans are exported only when configured: with ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, over OTLP/HTTP (the SDK reads its other ``OTEL_*``
variables, such as headers and timeouts, itself). Otherwise spans are made, so events and logs
carry trace ids, and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROPAGATOR = TraceContextTextMapPropagator()
TRACER = trace.get_tracer("tenantflow")


class TracingSettings(BaseSettings):
    """OpenTelemetry's own variables that decide whether spans leave the process."""

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    exporter_otlp_endpoint: str | None = Field(default=None)
    exporter_otlp_traces_endpoint: str | None = Field(default=None)

    @property
    def exporting(self) -> bool:
        return bool(self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint)


def configure(service: str, settings: TracingSettings | None = None) -> TracerProvider:
    """This process's tracer provider, named for ``service``; spans exported over OTLP/HTTP
    when ``settings`` say where to."""
    settings = settings or TracingSettings()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if settings.exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def current() -> tuple[str | None, str | None]:
    """The current span's context as ``traceparent`` and ``tracestate`` (None outside a span)."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


def _parent(traceparent: str | None, tracestate: str | None) -> Any:
    carrier = {"traceparent": traceparent or ""}
    if tracestate:
        carrier["tracestate"] = tracestate
    return PROPAGATOR.extract(carrier)


@contextmanager
def consuming(
    traceparent: str | None,
    tracestate: str | None,
    topic: str,
    group: str,
    event_type: str,
    event_id: str,
    position: tuple[int, int] | None = None,
) -> Iterator[Span]:
    """A consumer span for one event, continuing the trace its headers carry (a new trace when
    they carry none), current while its handler runs."""
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group,
        "messaging.message.id": event_id,
        "cloudevents.event_type": event_type,
        "cloudevents.event_id": event_id,
    }
    if position is not None:
        attributes["messaging.destination.partition.id"] = str(position[0])
        attributes["messaging.kafka.offset"] = position[1]
    with TRACER.start_as_current_span(
        f"process {topic}",
        context=_parent(traceparent, tracestate),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


@contextmanager
def serving(
    method: str, path: str, traceparent: str | None, tracestate: str | None
) -> Iterator[Span]:
    """A server span for one HTTP request, continuing its caller's trace."""
    with TRACER.start_as_current_span(
        method,
        context=_parent(traceparent, tracestate),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path},
    ) as span:
        yield span
