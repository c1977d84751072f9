from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from services.orders.app import create_app
from services.orders.context import OrdersContext
from services.orders.runtime import orders_context_of, outbound_client
from services.orders.settings import OrdersSettings
from shared.app import default_service_token
from shared.events import AuditEvent
from shared.outbox import outbox
from tests.conftest import DatabaseFactory
from tests.orders.fakes import SERVICE_TOKEN, FakeAccess, FakeAudit, FakeCatalog, product_version
from tests.support import ROOT, TestKeys, trust_test_keys

WEBHOOK_SECRET = "whsec_orders_tests"
#: Signed test tokens by identity: (when signed, the header). Re-signed after _TOKEN_REUSE_SECONDS.
_TOKENS: dict[tuple[str, tuple[str, ...], str, str | None], tuple[float, dict[str, str]]] = {}
_TOKEN_REUSE_SECONDS = 300.0
PROVIDER_ORG = "org_provider"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def localstripe() -> Iterator[str]:
    """One localstripe for the session, from scratch, on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "localstripe"), "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    keys: TestKeys
    catalog: FakeCatalog
    access: FakeAccess
    stripe_url: str
    base_url: str | None = None
    product: dict[str, Any] = field(default_factory=dict)

    @property
    def ctx(self) -> OrdersContext:
        return orders_context_of(self.app)

    def auth(self, roles: list[str], org: str, sub: str | None = None) -> dict[str, str]:
        # Signing a test token parses the private key (~60 ms): sign each identity once, and
        # again once the token is older than _TOKEN_REUSE_SECONDS (tokens live 900 s, and a
        # whole suite on a loaded machine runs longer than that).
        cache_key = (self.keys.kid, tuple(roles), org, sub)
        cached = _TOKENS.get(cache_key)
        if cached is None or time.monotonic() - cached[0] > _TOKEN_REUSE_SECONDS:
            token = self.keys.token(roles=roles, org=org, sub=sub or f"cli_{org}")
            cached = _TOKENS[cache_key] = (time.monotonic(), {"Authorization": f"Bearer {token}"})
        return dict(cached[1])

    def buyer(self, org: str = "org_buyer_a") -> dict[str, str]:
        return self.auth(["buyer"], org)

    def provider(self, org: str = PROVIDER_ORG) -> dict[str, str]:
        return self.auth(["provider"], org)

    def operator(self) -> dict[str, str]:
        return self.auth(["operator"], "org_platform")

    def regulator(self) -> dict[str, str]:
        return self.auth(["regulator"], "org_regulator")

    async def quote(self, plan_id: str = "plan_monthly", *, buyer: dict[str, str] | None = None,
                    **extra: Any) -> dict[str, Any]:
        body = {"product_id": self.product["product_id"], "version": self.product["version"],
                "plan_id": plan_id, **extra}
        resp = await self.client.post("/v1/quotes", json=body, headers=buyer or self.buyer())
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    async def order(self, quote_id: str, *, purpose: str = "research", key: str | None = None,
                    buyer: dict[str, str] | None = None) -> httpx.Response:
        headers = {**(buyer or self.buyer()), "Idempotency-Key": key or str(uuid.uuid4())}
        return await self.client.post("/v1/orders", json={"quote_id": quote_id, "purpose": purpose},
                                      headers=headers)

    async def placed(self, plan_id: str = "plan_monthly", **kw: Any) -> dict[str, Any]:
        buyer = kw.pop("buyer", None)
        quote = await self.quote(plan_id, buyer=buyer, **kw)
        resp = await self.order(quote["id"], buyer=buyer)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    async def subscribe(self, plan_id: str = "plan_monthly", *, payment_method: str = "pm_card_visa",
                        buyer: dict[str, str] | None = None, expect: int = 201,
                        **extra: Any) -> dict[str, Any]:
        """Quote ``plan_id`` as a subscription and start it; the subscription (or the problem)."""
        offer = extra.pop("offer_id", None)
        quote = await self.quote(plan_id, buyer=buyer, mode="subscription",
                                 **({"offer_id": offer} if offer else {}))
        body = {"quote_id": quote["id"], "purpose": "research", "payment_method": payment_method, **extra}
        resp = await self.client.post("/v1/subscriptions", json=body, headers={
            **(buyer or self.buyer()), "Idempotency-Key": str(uuid.uuid4())})
        assert resp.status_code == expect, resp.text
        return dict(resp.json())

    async def subscription(self, sub_id: str) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/subscriptions/{sub_id}", headers=self.operator())
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def renew(self, sub_id: str) -> dict[str, Any]:
        """Bill the next period now (the operator's endpoint); the subscription."""
        resp = await self.client.post(f"/v1/subscriptions/{sub_id}/renew", headers=self.operator())
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def orders_of(self, sub_id: str) -> list[dict[str, Any]]:
        """The subscription's orders, oldest first."""
        resp = await self.client.get(f"/v1/orders?subscription_id={sub_id}", headers=self.operator())
        assert resp.status_code == 200, resp.text
        return list(reversed(resp.json()["items"]))

    async def delivered(self, timeout: float = 5.0) -> None:
        """Wait until the outbox to access is empty (grants, changes, revocations delivered)."""
        deadline = time.monotonic() + timeout
        while True:
            async with self.ctx.sessionmaker() as s:
                pending = (await s.execute(select(outbox.c.id).where(
                    outbox.c.destination == "access", outbox.c.delivered_at.is_(None)))).first()
            if pending is None:
                return
            assert time.monotonic() < deadline, "entitlement commands not delivered"
            await asyncio.sleep(0.03)

    async def get(self, order_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        resp = await self.client.get(f"/v1/orders/{order_id}", headers=headers or self.operator())
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def wait_status(self, order_id: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            order = await self.get(order_id)
            if order["status"] == status or time.monotonic() > deadline:
                assert order["status"] == status, order
                return order
            await asyncio.sleep(0.05)

    async def events(self, action_prefix: str = "orders.") -> list[AuditEvent]:
        async with self.ctx.sessionmaker() as s:
            rows = (await s.execute(select(outbox.c.payload).where(outbox.c.kind == "audit_event")
                                    .order_by(outbox.c.id))).scalars().all()
        return [e for e in (AuditEvent.model_validate(r) for r in rows) if e.action.startswith(action_prefix)]


@contextlib.asynccontextmanager
async def serve_http(app: FastAPI) -> AsyncIterator[str]:
    """Serve an already started app over real HTTP (for localstripe's webhooks)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def start_orders(database_url: str, keys: TestKeys, stripe_url: str, *, http: bool = False,
                       **overrides: Any) -> AsyncIterator[Harness]:
    catalog, access = FakeCatalog(), FakeAccess()
    product = catalog.add(product_version())
    settings = OrdersSettings(
        database_url=database_url, catalog_url="http://catalog.test", access_url="http://access.test",
        audit_url="http://audit.test",
        token_issuer="http://127.0.0.1:8003", stripe_api_base=stripe_url,
        stripe_webhook_secret=WEBHOOK_SECRET, reconcile_interval_seconds=0,
        fulfilment_poll_seconds=0.05, log_json=False, **overrides,
    )
    outbound = httpx.AsyncClient(mounts={
        "http://catalog.test": httpx.ASGITransport(app=catalog.app),
        "http://access.test": httpx.ASGITransport(app=access.app),
        "http://audit.test": FakeAudit(),
    })

    async def token() -> str:
        return SERVICE_TOKEN

    app = create_app(settings)
    # The services orders calls are in-process fakes; tokens are signed by the test key.
    app.dependency_overrides[outbound_client] = lambda runtime: outbound
    app.dependency_overrides[default_service_token] = lambda runtime: token
    trust_test_keys(app, keys)
    async with outbound, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            harness = Harness(app, client, keys, catalog, access, stripe_url, product=product)
            if http:
                async with serve_http(app) as base:
                    harness.base_url = base
                    yield harness
            else:
                yield harness


@pytest.fixture
async def orders(database_url: DatabaseFactory, test_keys: TestKeys, localstripe: str) -> AsyncIterator[Harness]:
    async with start_orders(database_url("orders"), test_keys, localstripe) as h:
        yield h


@pytest.fixture
async def orders_http(database_url: DatabaseFactory, test_keys: TestKeys,
                      localstripe: str) -> AsyncIterator[Harness]:
    """Orders served over HTTP too, with localstripe's webhook pointing at it."""
    async with start_orders(database_url("orders"), test_keys, localstripe, http=True) as h:
        await register_webhook(localstripe, f"{h.base_url}/v1/webhooks/stripe")
        yield h


async def register_webhook(stripe_url: str, url: str) -> None:
    async with httpx.AsyncClient() as c:
        resp = await c.post(f"{stripe_url}/_config/webhooks/orders",
                            data={"url": url, "secret": WEBHOOK_SECRET,
                                  "events[]": ["payment_intent.succeeded", "payment_intent.payment_failed",
                                               "invoice.payment_succeeded", "invoice.payment_failed",
                                               "customer.subscription.deleted"]})
        assert resp.status_code == 200, resp.text
