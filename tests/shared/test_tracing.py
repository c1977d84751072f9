"""Tracing across services (shared.tracing): a buyer's purchase is one trace from the buyer's
request through orders, catalog, the outbox hop to access and the audit append, with every span's
parent in the trace; with tracing off (the default) the same purchase works and nothing is traced.

The four services run in-process (catalog, orders, access, audit, on SQLite and PostgreSQL); their
HTTP clients reach each other through a transport that routes by port to each app, so every
outgoing call, relay delivery and token fetch goes through the real code paths."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select

from services.access.runtime import AccessState
from services.access.tokens import LocalServiceToken, sign
from services.audit.models import events
from shared import app as shared_app
from shared.app import default_service_token
from shared.outbox import outbox
from shared.runtime import runtime_of
from shared.settings import DEFAULT_PORTS
from tests.catalog.conftest import spec
from tests.conftest import DatabaseFactory
from tests.support import app_factory, settings_class

SERVICES = ("access", "audit", "catalog", "orders")
FREE_PLAN = [{"name": "Open access", "kind": "free", "currency": "EUR", "access_days": 30,
              "query_quota": 1000}]


class Routed(httpx.AsyncBaseTransport):
    """127.0.0.1:<port> → the in-process app that ``make run`` would serve on that port."""

    def __init__(self, apps: dict[int, FastAPI]) -> None:
        self.apps = apps

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = request.url.port
        if port not in self.apps:
            raise httpx.ConnectError(f"nothing listens on {request.url.host}:{port}", request=request)
        return await httpx.ASGITransport(app=self.apps[port]).handle_async_request(request)


@dataclass
class Market:
    apps: dict[str, FastAPI]
    routed: Routed
    mint: Callable[..., str]

    def client(self, service: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.routed,
                                 base_url=f"http://127.0.0.1:{DEFAULT_PORTS[service]}")

    def spans(self) -> list[ReadableSpan]:
        found: list[ReadableSpan] = []
        for app in self.apps.values():
            exporter: InMemorySpanExporter | None = app.state.span_exporter
            if exporter is not None:
                found += exporter.get_finished_spans()
        return found

    async def count(self, service: str, table: Any, *where: Any) -> int:
        async with runtime_of(self.apps[service]).db.sessionmaker() as s:
            return int(await s.scalar(select(func.count()).select_from(table).where(*where)) or 0)


@contextlib.asynccontextmanager
async def market(database_url: DatabaseFactory, monkeypatch: pytest.MonkeyPatch,
                 trace_exporter: str) -> AsyncIterator[Market]:
    apps: dict[str, FastAPI] = {}
    routed = Routed({})

    def routed_client(timeout: float = 10.0, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, transport=routed, **kwargs)

    monkeypatch.setattr(shared_app, "create_http_client", routed_client)
    for name in SERVICES:
        overrides: dict[str, Any] = {"trace_exporter": trace_exporter, "outbox_poll_seconds": 0.05}
        if name == "orders":
            overrides["fulfilment_poll_seconds"] = 0.05
        settings = settings_class(name)(database_url=database_url(name), **overrides)
        apps[name] = app_factory(name)(settings)
        routed.apps[DEFAULT_PORTS[name]] = apps[name]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(apps["access"].router.lifespan_context(apps["access"]))
        keys = runtime_of(apps["access"]).state(AccessState).keys
        access_settings = runtime_of(apps["access"]).settings
        for name in ("audit", "catalog", "orders"):
            # Each service's own token for its relays and calls, as /oauth/token would issue it.
            apps[name].dependency_overrides[default_service_token] = \
                lambda runtime, name=name: LocalServiceToken(
                    keys, client_id=f"svc-{name}", issuer=access_settings.token_issuer,
                    audience=access_settings.token_audience)
            await stack.enter_async_context(apps[name].router.lifespan_context(apps[name]))

        def mint(roles: list[str], org: str | None) -> str:
            now = int(time.time())
            sub = "cli_" + secrets.token_hex(6)
            return sign(keys, {"iss": access_settings.token_issuer, "sub": sub,
                               "aud": access_settings.token_audience, "iat": now, "nbf": now,
                               "exp": now + 900, "jti": secrets.token_urlsafe(8), "client_id": sub,
                               "org": org, "roles": roles, "scope": " ".join(roles)})

        yield Market(apps, routed, mint)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def listed_product(m: Market) -> dict[str, Any]:
    async with m.client("access") as access, m.client("catalog") as catalog:
        operator = bearer(m.mint(["operator"], None))
        orgs = {}
        for role in ("provider", "buyer"):
            resp = await access.post("/v1/organisations", json={"name": f"{role} {secrets.token_hex(3)}",
                                                                "roles": [role]}, headers=operator)
            assert resp.status_code == 201, resp.text
            orgs[role] = resp.json()["id"]
        provider = bearer(m.mint(["provider"], orgs["provider"]))
        body = spec(slug=f"transit-{secrets.token_hex(3)}", plans=FREE_PLAN)
        product = await catalog.post("/v1/products", json=body, headers=provider)
        assert product.status_code == 201, product.text
        listed = await catalog.post(f"/v1/products/{product.json()['id']}/submit", headers=provider)
        assert listed.status_code == 200 and listed.json()["status"] == "listed", listed.text
        return {**listed.json(), "buyer_org": orgs["buyer"]}


async def purchase(m: Market, product: dict[str, Any], client: httpx.AsyncClient) -> dict[str, Any]:
    """The buyer quotes the free plan and orders it (a free order is paid at once)."""
    buyer = bearer(m.mint(["buyer"], product["buyer_org"]))
    quote = await client.post("/v1/quotes", headers=buyer, json={
        "product_id": product["id"], "version": product["version"], "plan_id": product["plans"][0]["id"]})
    assert quote.status_code == 201, quote.text
    order = await client.post("/v1/orders", json={"quote_id": quote.json()["id"], "purpose": "research"},
                              headers={**buyer, "Idempotency-Key": secrets.token_hex(8)})
    assert order.status_code == 201, order.text
    return dict(order.json())


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes[SERVICE_NAME])


def ancestry(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = [span]
    while chain[-1].parent is not None and chain[-1].parent.span_id in by_id:
        chain.append(by_id[chain[-1].parent.span_id])
    return chain


async def test_a_purchase_is_one_trace_across_catalog_orders_access_and_audit(
        database_url: DatabaseFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    buyer_exporter = InMemorySpanExporter()
    buyer_tracing = TracerProvider(resource=Resource.create({SERVICE_NAME: "buyer"}))
    buyer_tracing.add_span_processor(SimpleSpanProcessor(buyer_exporter))
    async with market(database_url, monkeypatch, "memory") as m:
        product = await listed_product(m)
        async with m.client("orders") as orders:
            HTTPXClientInstrumentor.instrument_client(orders, tracer_provider=buyer_tracing)
            with buyer_tracing.get_tracer("buyer").start_as_current_span("buyer purchase") as root:
                order = await purchase(m, product, orders)
        trace_id = root.get_span_context().trace_id

        def in_trace() -> list[ReadableSpan]:
            return [s for s in m.spans() + list(buyer_exporter.get_finished_spans())
                    if s.context is not None and s.context.trace_id == trace_id]

        async def audit_appended_the_grant() -> bool:
            granted = await m.count("audit", events, events.c.action == "access.entitlement.granted")
            return granted > 0 and any(
                service_of(s) == "audit" and s.name == "POST /v1/events" for s in in_trace())

        await eventually(audit_appended_the_grant, "the entitlement's audit event in the trace")
        async with m.client("orders") as orders:
            got = await orders.get(f"/v1/orders/{order['id']}",
                                   headers=bearer(m.mint(["buyer"], product["buyer_org"])))
        assert got.json()["status"] == "fulfilled", got.text
        spans = in_trace()

    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    assert {service_of(s) for s in spans} >= {"buyer", "catalog", "orders", "access", "audit"}
    # Every span but the buyer's root has its parent in the same trace: no orphans, no new roots.
    root_id = root.get_span_context().span_id
    orphans = [(service_of(s), s.name) for s in spans
               if s.context.span_id != root_id and (s.parent is None or s.parent.span_id not in by_id)]
    assert orphans == []

    # The outbox hop: orders' delivery of the grant continues the order request's trace ...
    [grant] = [s for s in spans if s.name == "outbox deliver grant_entitlement"]
    assert service_of(grant) == "orders" and grant.attributes is not None
    assert grant.attributes["sluice.outbox.destination"] == "access"
    assert [service_of(s) for s in ancestry(grant, by_id)][-1] == "buyer"
    assert any(service_of(s) == "orders" and s.name == "POST /v1/orders" for s in ancestry(grant, by_id))
    # ... access's grant is a child of that delivery (through orders' client span) ...
    [granted] = [s for s in spans if service_of(s) == "access" and s.name == "POST /v1/entitlements"]
    assert grant in ancestry(granted, by_id)
    # ... and the audit append of access's event is a child of access's own outbox delivery,
    # below the grant: catalog → orders → outbox → access → outbox → audit, one trace.
    appends = [s for s in spans if service_of(s) == "audit" and s.name == "POST /v1/events"]
    chains = [ancestry(s, by_id) for s in appends]
    assert any(granted in chain and any(service_of(c) == "access" and c.name.startswith("outbox deliver")
                                        for c in chain) for chain in chains)
    # The catalog answered orders inside the same trace (the quote and the order re-check).
    assert any(service_of(s) == "catalog" and "orders" in {service_of(c) for c in ancestry(s, by_id)}
               for s in spans)


async def test_with_tracing_off_the_purchase_works_and_nothing_is_traced(
        database_url: DatabaseFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    async with market(database_url, monkeypatch, "none") as m:
        for app in m.apps.values():
            assert app.state.tracer_provider is None and app.state.span_exporter is None
            assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
            assert not getattr(runtime_of(app).http, "_is_instrumented_by_opentelemetry", False)
        product = await listed_product(m)
        async with m.client("orders") as orders:
            order = await purchase(m, product, orders)

        async def fulfilled() -> bool:
            async with m.client("orders") as orders:
                got = await orders.get(f"/v1/orders/{order['id']}",
                                       headers=bearer(m.mint(["buyer"], product["buyer_org"])))
            return bool(got.json()["status"] == "fulfilled")

        await eventually(fulfilled, "the order to be fulfilled")

        async def granted_in_audit() -> int:
            return await m.count("audit", events, events.c.action == "access.entitlement.granted")

        await eventually(granted_in_audit, "the entitlement's audit event")
        for name in SERVICES:
            assert await m.count(name, outbox, outbox.c.trace_context.is_not(None)) == 0, name
        assert m.spans() == []
