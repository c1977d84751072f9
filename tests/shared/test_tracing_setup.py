"""shared.tracing without services: the exporter each setting chooses, the delivery span's parent
and headers, and how audit batches are split by trace (no database, no network)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from services.catalog.settings import CatalogSettings
from shared import tracing
from shared.logging import JsonFormatter
from shared.outbox import OutboxMessage

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def message(i: int, trace: dict[str, str] | None) -> OutboxMessage:
    return OutboxMessage(i, "audit_event", f"m{i}", {}, 0, trace)


def test_off_by_default_and_nothing_is_instrumented() -> None:
    app = FastAPI()
    assert CatalogSettings().trace_exporter == "none"
    assert tracing.setup_tracing(app, CatalogSettings()) is None
    assert app.state.tracer_provider is None and app.state.span_exporter is None
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    assert tracing.current_carrier() is None


def test_otlp_exporter_uses_the_configured_endpoint() -> None:
    app = FastAPI()
    settings = CatalogSettings(trace_exporter="otlp", trace_otlp_endpoint="http://collector:4318/v1/traces",
                               trace_sample_ratio=0.25)
    provider = tracing.setup_tracing(app, settings)
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "catalog"
        assert "0.25" in provider.sampler.get_description()
        exporter, batched = tracing._exporter(settings)
        assert isinstance(exporter, OTLPSpanExporter) and batched
        assert exporter._endpoint == "http://collector:4318/v1/traces"
    finally:
        provider.shutdown()


def test_unknown_exporters_and_ratios_are_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError):
        CatalogSettings(trace_exporter="jaeger")
    with pytest.raises(ValidationError):
        CatalogSettings(trace_sample_ratio=1.5)


def test_delivery_span_continues_the_stored_context_and_sends_its_own() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = tracing._provider.set(provider)
    try:
        with tracing.delivery(message(7, {"traceparent": PARENT}), "audit") as headers:
            pass
    finally:
        tracing._provider.reset(token)
    [span] = exporter.get_finished_spans()
    assert span.name == "outbox deliver audit_event" and span.kind == SpanKind.PRODUCER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert headers["traceparent"].split("-")[1:3] == [f"{span.context.trace_id:032x}",
                                                      f"{span.context.span_id:016x}"]
    assert span.attributes is not None and span.attributes["messaging.message.id"] == "m7"


def test_without_a_provider_the_stored_context_still_travels() -> None:
    with tracing.delivery(message(1, {"traceparent": PARENT}), "access") as headers:
        assert headers == {"traceparent": PARENT}
    with tracing.delivery(message(2, None), "access") as headers:
        assert headers == {}


def test_audit_batches_split_where_the_trace_changes_and_keep_their_order() -> None:
    a, b = {"traceparent": PARENT}, {"traceparent": PARENT.replace("b7ad", "c7ad")}
    batch = [message(1, a), message(2, a), message(3, b), message(4, None), message(5, None),
             message(6, a)]
    runs = tracing.runs_by_trace(batch)
    assert [[m.id for m in run] for run in runs] == [[1, 2], [3], [4, 5], [6]]
    untraced = [message(i, None) for i in range(5)]
    assert tracing.runs_by_trace(untraced) == [untraced]
    assert tracing.runs_by_trace([]) == []


def test_log_lines_name_the_trace_when_there_is_one() -> None:
    import json
    import logging

    record = logging.LogRecord("sluice.test", logging.INFO, __file__, 1, "hello", None, None)
    assert "trace_id" not in json.loads(JsonFormatter("catalog").format(record))
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        line = json.loads(JsonFormatter("catalog").format(record))
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert line["span_id"] == f"{span.get_span_context().span_id:016x}"
