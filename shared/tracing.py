"""OpenTelemetry tracing: one trace per request, across services and through the outboxes.

Off by default (``TRACE_EXPORTER=none``): then no tracer provider exists, the app and its HTTP
client are not instrumented, and the only work left is :func:`current_carrier` finding no span
when an outbox row is written. On (``console``, ``otlp``, or ``memory`` for tests), each app gets
its own ``TracerProvider`` whose resource names the service (``service.name``), so several apps in
one process (the tests) still export as several services; the FastAPI instrumentation makes a
server span per request (continuing an incoming W3C ``traceparent``), the httpx instrumentation a
client span per outgoing call (sending ``traceparent`` on).

The outboxes carry the trace across the asynchronous hop: :func:`shared.outbox.enqueue` stores
:func:`current_carrier` (the W3C headers of the span that wrote the row) in the row's
``trace_context`` column, and a deliverer wraps each delivery in :func:`delivery`, a span whose
parent is that stored context and whose headers it sends. So the access fulfilment and the audit
append of a purchase are in the purchase's trace, however late the relay delivers them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind

if TYPE_CHECKING:
    import httpx

    from shared.outbox import OutboxMessage
    from shared.settings import ServiceSettings

logger = logging.getLogger("sluice.tracing")

TRACE_EXPORTERS = ("none", "console", "otlp", "memory")
#: Not traced: probes and scrapes (a load balancer checks every replica every few seconds).
EXCLUDED_URLS = "/healthz,/readyz,/metrics"

# The provider of the app whose lifespan started the current task (relays are tasks started in
# the lifespan, so their delivery spans belong to their own service even with several apps in
# one process). None: the global provider, a no-op unless someone installed one.
_provider: ContextVar[TracerProvider | None] = ContextVar("sluice_tracer_provider", default=None)


def _exporter(settings: ServiceSettings) -> tuple[SpanExporter, bool]:
    """The span exporter the settings ask for, and whether to batch (else export at span end)."""
    kind = settings.trace_exporter
    if kind == "console":
        return ConsoleSpanExporter(service_name=settings.service_name), False
    if kind == "memory":
        return InMemorySpanExporter(), False
    if kind == "otlp":
        # Imported here: only a process that exports over OTLP pays for protobuf and requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.trace_otlp_endpoint or None), True
    raise ValueError(f"unknown trace exporter {kind!r}; one of {', '.join(TRACE_EXPORTERS)}")


def setup_tracing(app: FastAPI, settings: ServiceSettings) -> TracerProvider | None:
    """Instrument ``app`` as the settings say; returns its provider (None when tracing is off).

    Sets ``app.state.tracer_provider`` and, for the ``memory`` exporter, ``app.state.span_exporter``
    (an ``InMemorySpanExporter`` the tests read)."""
    app.state.tracer_provider = None
    app.state.span_exporter = None
    if settings.trace_exporter == "none":
        return None
    exporter, batch = _exporter(settings)
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        sampler=ParentBasedTraceIdRatio(settings.trace_sample_ratio),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    # No internal span per ASGI send/receive: three spans per request instead of one, no information.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS,
                                       exclude_spans=["receive", "send"])
    app.state.tracer_provider = provider
    app.state.span_exporter = exporter if isinstance(exporter, InMemorySpanExporter) else None
    logger.info("tracing on: %s exporter, sample ratio %g", settings.trace_exporter,
                settings.trace_sample_ratio)
    return provider


def instrument_client(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Client spans and ``traceparent`` on ``client``'s calls, when ``app`` is traced."""
    provider: TracerProvider | None = getattr(app.state, "tracer_provider", None)
    if provider is not None and not getattr(client, "_is_instrumented_by_opentelemetry", False):
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[None]:
    """For the app's lifespan: tasks it starts (relays) trace with its provider; at the end,
    the spans still buffered are exported."""
    provider: TracerProvider | None = getattr(app.state, "tracer_provider", None)
    token = _provider.set(provider)
    try:
        yield
    finally:
        _provider.reset(token)
        if provider is not None:
            provider.shutdown()


def current_carrier() -> dict[str, str] | None:
    """The W3C trace headers (``traceparent``, ``tracestate``) of the current span, to store
    with an outbox row; None when there is no span (tracing off, or a background task)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def _tracer() -> trace.Tracer:
    return trace.get_tracer("sluice.outbox", tracer_provider=_provider.get())


@contextlib.contextmanager
def delivery(messages: OutboxMessage | Sequence[OutboxMessage],
             destination: str = "") -> Iterator[dict[str, str]]:
    """A span around one outbox delivery, child of the context stored with the (first) row;
    yields the headers to send with the delivery request (``traceparent``; empty when the row
    has no context and tracing is off). Exceptions are recorded on the span and re-raised."""
    batch: Sequence[OutboxMessage] = [messages] if not isinstance(messages, Sequence) else messages
    first = batch[0]
    parent = propagate.extract(first.trace or {})
    attributes: dict[str, Any] = {
        "sluice.outbox.kind": first.kind,
        "sluice.outbox.attempts": first.attempts,
        "messaging.batch.message_count": len(batch),
    }
    if destination:
        attributes["sluice.outbox.destination"] = destination
    if len(batch) == 1:
        attributes["messaging.message.id"] = first.message_id
    with _tracer().start_as_current_span(f"outbox deliver {first.kind}", context=parent,
                                         kind=SpanKind.PRODUCER, attributes=attributes):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


def runs_by_trace(messages: Sequence[OutboxMessage]) -> list[Sequence[OutboxMessage]]:
    """Consecutive messages split where their stored trace changes, so a batched delivery (the
    audit relay's) sends each request with the trace of all its rows. Untraced rows (tracing
    off) stay one batch; order is kept."""
    runs: list[Sequence[OutboxMessage]] = []
    start = 0
    for i in range(1, len(messages) + 1):
        if i == len(messages) or messages[i].trace != messages[start].trace:
            runs.append(messages[start:i])
            start = i
    return runs
