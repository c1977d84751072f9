"""ASGI middleware: request ids and Prometheus request metrics."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.logging import request_id_var

REQUEST_ID_HEADER = "x-request-id"
_VALID_RID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class _RequestIds:
    """Request ids: a random per-process prefix and a counter (32 hex characters, like the
    uuid4 hex they replace). Why: ``uuid4`` reads the kernel's random source on every call,
    a syscall per request that py-spy showed at 5-12 % of a cheap request's CPU on this
    machine; ids only need to be unique, not unpredictable. A forked child re-draws the
    prefix (``os.register_at_fork``), so workers never share one."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_request_id = _RequestIds().new


class RequestIdMiddleware:
    """Reads ``X-Request-ID`` (or makes one), exposes it to logs and outgoing
    calls through a context variable, and echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and _VALID_RID.match(incoming) else new_request_id()
        token = request_id_var.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class Metrics:
    """Per-app Prometheus registry (one per app, so tests can build many apps)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sluice_http_requests_total",
            "HTTP requests served",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sluice_http_request_duration_seconds",
            "HTTP request latency",
            ["service", "method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.dead_letters = Gauge(
            "sluice_outbox_dead_letters",
            "Outbox messages a receiver refused for good (GET /v1/outbox/dead-letters)",
            ["service", "destination"],
            registry=self.registry,
        )
        self.service = service


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            # The route template (not the raw path) keeps label cardinality bounded.
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            m = self.metrics
            m.requests.labels(m.service, scope["method"], template, str(status)).inc()
            m.latency.labels(m.service, scope["method"], template).observe(
                time.perf_counter() - start
            )
