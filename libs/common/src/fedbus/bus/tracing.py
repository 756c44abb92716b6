"""W3C trace context carried in Kafka headers, so one trace follows a job across services."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

__all__ = [
    "consume_span",
    "event_trace_headers",
    "headers_to_carrier",
    "inject_headers",
    "produce_span",
    "tracing_enabled",
]

_tracer = trace.get_tracer("fedbus.bus")

Headers = list[tuple[str, bytes]]


def tracing_enabled() -> bool:
    """True once an OpenTelemetry SDK tracer provider is installed (spans are recorded).

    Without one, spans are no-ops and the bus skips them: the trace context still travels,
    in the event envelope and in the ``traceparent`` header.
    """
    return type(trace.get_tracer_provider()).__name__ not in {
        "ProxyTracerProvider",
        "NoOpTracerProvider",
    }


def event_trace_headers(traceparent: str, tracestate: str | None) -> Headers:
    """W3C headers taken from an event's envelope."""
    headers = [("traceparent", traceparent.encode())]
    if tracestate:
        headers.append(("tracestate", tracestate.encode()))
    return headers


def headers_to_carrier(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers (name, bytes) as the str-to-str carrier OpenTelemetry propagators read."""
    return {k: v.decode("utf-8", "replace") for k, v in headers or () if v is not None}


def inject_headers(headers: Headers | None = None) -> Headers:
    """Return ``headers`` plus ``traceparent``/``tracestate`` of the current context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    out = [h for h in headers or [] if h[0] not in carrier]
    out.extend((k, v.encode()) for k, v in carrier.items())
    return out


@contextmanager
def consume_span(topic: str, headers: Sequence[tuple[str, bytes | None]] | None) -> Iterator[Span]:
    """A consumer span whose parent is the producer's context found in the record headers."""
    if not tracing_enabled():
        yield trace.INVALID_SPAN
        return
    parent = propagate.extract(headers_to_carrier(headers))
    token = otel_context.attach(parent)
    try:
        with _tracer.start_as_current_span(f"{topic} process", kind=SpanKind.CONSUMER) as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.destination.name", topic)
            yield span
    finally:
        otel_context.detach(token)


@contextmanager
def produce_span(topic: str) -> Iterator[Span]:
    """A producer span; headers injected inside it carry its context."""
    with _tracer.start_as_current_span(f"{topic} publish", kind=SpanKind.PRODUCER) as span:
        span.set_attribute("messaging.system", "kafka")
        span.set_attribute("messaging.destination.name", topic)
        yield span
