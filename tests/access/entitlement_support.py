"""Fixtures for the entitlement, data-token, revocation and usage tests: an
access service talking to a fake catalog, with buyer and provider parties.

Test modules import ``market_fixture`` and ``deal_fixture``; pytest finds them
by their names ``market`` and ``deal``."""

from __future__ import annotations

import functools
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from services.access.bootstrap import PLATFORM_ORG_NAME
from services.access.catalog_client import CatalogClient
from services.access.keys import generate_signing_key
from services.access.models import ApiClient, Entitlement, Organisation, SigningKey
from services.access.runtime import AccessState
from services.access.tokens import sign
from shared.events import AuditEvent
from shared.outbox import outbox
from tests.access.conftest import OPERATOR_ID, OPERATOR_SECRET, bearer, get_token, onboard
from tests.access.fake_catalog import FakeCatalog
from tests.conftest import DatabaseFactory
from tests.support import RunningApp, TestKeys, run_app


@dataclass
class Party:
    org_id: str
    client_id: str
    secret: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Market:
    svc: RunningApp
    catalog: FakeCatalog
    operator_token: str
    service_token: str

    @property
    def client(self) -> httpx.AsyncClient:
        return self.svc.client

    @property
    def service(self) -> dict[str, str]:
        return bearer(self.service_token)

    @property
    def operator(self) -> dict[str, str]:
        return bearer(self.operator_token)

    async def party(self, roles: list[str], name: str | None = None, *,
                    with_client: bool = False) -> Party:
        """An onboarded organisation and a platform token for it.

        Argon2 hashing makes a real client cost about a second on a loaded
        machine, so by default the token is signed with the service's own key
        for a client id that was never stored (tokens are verified offline,
        as everywhere); ``with_client`` creates and logs in a real client
        (needed where the client authenticates with its secret).
        """
        name = name or f"{roles[0]}-{secrets.token_hex(3)}"
        if with_client:
            client = await onboard(self.svc, self.operator_token, name, roles)
            token = await get_token(self.svc, client["client_id"], client["client_secret"])
            return Party(client["organisation_id"], client["client_id"], client["client_secret"],
                         token)
        org = await self.client.post("/v1/organisations", json={"name": name, "roles": roles},
                                     headers=self.operator)
        assert org.status_code == 201, org.text
        client_id = "cli_" + secrets.token_hex(10)
        return Party(org.json()["id"], client_id, "", mint(self.svc, client_id, org.json()["id"], roles))

    async def login(self, party: Party) -> Party:
        """A real API client (with a secret) in ``party``'s organisation."""
        resp = await self.client.post(f"/v1/organisations/{party.org_id}/clients",
                                      json={"name": f"client-{secrets.token_hex(3)}"},
                                      headers=self.operator)
        assert resp.status_code == 201, resp.text
        client = resp.json()
        token = await get_token(self.svc, client["client_id"], client["client_secret"])
        return Party(party.org_id, client["client_id"], client["client_secret"], token)

    async def grant(self, buyer: Party, product_id: str, *, expect: int = 201,
                    **over: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "order_id": "ord_" + secrets.token_hex(6), "buyer_org": buyer.org_id,
            "product_id": product_id, "version": 1, "plan_id": "plan_monthly",
            "purpose": "research", "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_until": (now + timedelta(days=30)).isoformat(),
        }
        body.update(over)
        resp = await self.client.post("/v1/entitlements", json=body, headers=self.service)
        assert resp.status_code == expect, resp.text
        return dict(resp.json())

    async def token(self, buyer: Party, ent_id: str, *, expect: int = 201,
                    **body: Any) -> dict[str, Any]:
        resp = await self.client.post(f"/v1/entitlements/{ent_id}/tokens",
                                      json=body or None, headers=buyer.headers)
        assert resp.status_code == expect, resp.text
        return dict(resp.json())

    async def usage(self, ent: dict[str, Any], *, epsilon: float = 0.0, expect: int = 201,
                    usage_id: str | None = None, headers: dict[str, str] | None = None) -> Any:
        resp = await self.client.post("/v1/usage", json={
            "usage_id": usage_id or str(uuid.uuid4()), "entitlement_id": ent["id"],
            "jti": "jti-" + secrets.token_hex(4), "product_id": ent["product_id"],
            "rows_returned": 3, "suppressed_groups": 0, "epsilon_spent": epsilon,
            "occurred_at": datetime.now(UTC).isoformat(),
        }, headers=headers or self.service)
        assert resp.status_code == expect, resp.text
        return resp.json()

    async def feed(self, since: str | None = None, headers: dict[str, str] | None = None) -> Any:
        params = {"since": since} if since is not None else {}
        resp = await self.client.get("/v1/revocations", params=params,
                                     headers=headers or self.service)
        assert resp.status_code == 200, resp.text
        return resp.json()

    async def set_entitlement(self, ent_id: str, **values: Any) -> None:
        """Change a row directly (e.g. move its validity into the past)."""
        async with self.svc.db.sessionmaker() as s, s.begin():
            row = await s.get(Entitlement, ent_id)
            assert row is not None
            for k, v in values.items():
                setattr(row, k, v)

    async def events(self, action: str) -> list[AuditEvent]:
        async with self.svc.db.sessionmaker() as s:
            rows = (await s.execute(select(outbox.c.payload).where(outbox.c.kind == "audit_event")
                                    .order_by(outbox.c.id))).scalars().all()
        return [e for e in (AuditEvent.model_validate(r) for r in rows) if e.action == action]


def mint(svc: RunningApp, client_id: str, org_id: str | None, roles: list[str]) -> str:
    """A platform token as /oauth/token would issue it, signed with the app's key."""
    settings = svc.settings
    now = int(time.time())
    return sign(svc.state(AccessState).keys, {
        "iss": settings.token_issuer, "sub": client_id, "aud": settings.token_audience,
        "iat": now, "nbf": now, "exp": now + 900, "jti": secrets.token_urlsafe(8),
        "client_id": client_id, "org": org_id, "roles": roles, "scope": " ".join(roles)})


def problem_type(resp: httpx.Response) -> str:
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
    return str(resp.json()["type"]).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Seed:
    """Rows made once per session: an operator client's Argon2 hash and an RSA
    signing key. Writing them into each test's fresh database before the app
    starts skips the bootstrap hash and the key generation, which cost one to
    two seconds per test on a busy machine."""

    operator_hash: str
    key: dict[str, Any]


@functools.cache
def access_seed() -> Seed:
    key = generate_signing_key(2048, None)
    return Seed(
        operator_hash=PasswordHasher().hash(OPERATOR_SECRET),
        key={"kid": key.kid, "private_pem": key.private_pem, "public_jwk": key.public_jwk,
             "status": "active", "created_at": key.created_at},
    )


async def seed_database(url: str, seed: Seed) -> None:
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as s, s.begin():
            org = Organisation(id="org_platform_seed", name=PLATFORM_ORG_NAME, roles=["operator"],
                               status="active")
            s.add(org)
            await s.flush()
            s.add(ApiClient(client_id=OPERATOR_ID, organisation_id=org.id, name="bootstrap operator",
                            secret_hash=seed.operator_hash, roles=["operator"], status="active"))
            s.add(SigningKey(**seed.key))
    finally:
        await engine.dispose()


def use_catalog(access: RunningApp, client: CatalogClient) -> None:
    """Make the running access app ask ``client`` (a fake or an in-process catalog): set on its
    state, which every route (``get_catalog``) and the data-token lane (token_lane.py) read."""
    access.state(AccessState).catalog = client


@pytest.fixture(name="market")
async def market_fixture(database_url: DatabaseFactory, test_keys: TestKeys) -> AsyncIterator[Market]:
    url = database_url("access")
    await seed_database(url, access_seed())
    async with run_app("access", url, keys=test_keys) as access:
        operator_token = mint(access, OPERATOR_ID, "org_platform_seed", ["operator"])
        fake = FakeCatalog()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
            service_token_source = access.runtime.service_token
            assert service_token_source is not None
            use_catalog(access, CatalogClient("http://catalog.test", http, service_token_source,
                                              status_cache_seconds=0))
            service_token = await service_token_source()
            yield Market(access, fake, operator_token, service_token)


@dataclass
class Deal:
    market: Market
    provider: Party
    buyer: Party
    product_id: str
    ent: dict[str, Any]


@pytest.fixture(name="deal")
async def deal_fixture(market: Market) -> Deal:
    """A provider with a listed L3 product (quota 100, epsilon 1.0) and a buyer
    with an active entitlement to it."""
    provider = await market.party(["provider"])
    buyer = await market.party(["buyer"])
    product_id = market.catalog.add_product(provider.org_id)
    ent = await market.grant(buyer, product_id)
    return Deal(market, provider, buyer, product_id, ent)
