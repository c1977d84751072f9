"""Token attacks on ``POST /v1/orders`` and ``POST /v1/quotes``, which the order lane
(services/orders/order_lane.py) answers before FastAPI routes them: every attack is refused
through the lane exactly as by the route, and orders, quotes and records nothing
(tests/lane_attacks.py)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.orders.models import Order, Quote
from services.orders.order_lane import OrderLane
from shared.runtime import runtime_of
from tests.lane_attacks import (
    Headers,
    LaneSigner,
    LaneTarget,
    assert_every_attack_refused_alike,
    assert_malformed_headers_answered_alike,
    assert_replaced_authentication_obeyed,
    bearer,
)
from tests.orders.conftest import Harness

BUYER_ORG = "org_buyer_a"  # Harness.buyer()'s organisation: the quotes' buyer
ROUTES = ("/v1/orders", "/v1/quotes")


@pytest.fixture
def signer(orders: Harness) -> LaneSigner:
    """Signs as the orders tests' buyer tokens are signed (Harness.buyer)."""
    settings = runtime_of(orders.app).settings
    return LaneSigner(kid=orders.keys.kid, private=orders.keys.private_pem.decode(),
                      public_jwk=orders.keys.public_jwk, issuer=settings.token_issuer,
                      audience=settings.token_audience,
                      identity={"sub": f"cli_{BUYER_ORG}", "client_id": f"cli_{BUYER_ORG}",
                                "org": BUYER_ORG, "roles": ["buyer"], "scope": "buyer"})


def lane_target(orders: Harness, monkeypatch: pytest.MonkeyPatch, path: str) -> LaneTarget:
    """``path`` with a body the lane takes: for an order, a fresh quote of the buyer's
    (made before the request, so not counted as its write) and a fresh Idempotency-Key."""
    quote: dict[str, Any] = {}

    async def fresh_quote() -> None:
        quote.update(await orders.quote("plan_free"))

    async def send(headers: Headers) -> httpx.Response:
        if path == "/v1/orders":
            body: dict[str, Any] = {"quote_id": quote["id"], "purpose": "research"}
            headers = [*headers, ("Idempotency-Key", str(uuid.uuid4()))]
        else:
            body = {"product_id": orders.product["product_id"], "version": orders.product["version"],
                    "plan_id": "plan_free"}
        return await orders.client.post(path, json=body, headers=headers)

    return LaneTarget(send, orders.ctx.sessionmaker, (Quote.__table__, Order.__table__),
                      runtime_of(orders.app).verifier, OrderLane, monkeypatch,
                      prepare=fresh_quote if path == "/v1/orders" else None)


@pytest.fixture(params=ROUTES)
def target(request: pytest.FixtureRequest, orders: Harness, monkeypatch: pytest.MonkeyPatch) -> LaneTarget:
    return lane_target(orders, monkeypatch, str(request.param))


async def test_the_lane_takes_and_answers_the_control_token(target: LaneTarget, signer: LaneSigner) -> None:
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims())))
    assert lane.resp.status_code == 201, lane.resp.text
    assert (lane.verified, route.verified) == (1, 1)  # the lane answered: the route never ran
    assert lane.comparable() == route.comparable()
    assert lane.rows.get("orders", 0) + lane.rows.get("quotes", 0) == 1  # the order, or the quote


async def test_every_attack_token_is_refused_by_the_lane_as_by_the_route(
        target: LaneTarget, signer: LaneSigner) -> None:
    await assert_every_attack_refused_alike(target, signer)


async def test_malformed_authorization_headers_are_answered_as_by_the_route(
        target: LaneTarget, signer: LaneSigner) -> None:
    await assert_malformed_headers_answered_alike(target, signer, accepted=201)



async def test_a_replaced_authentication_is_obeyed_by_the_lane(
        target: LaneTarget, orders: Harness, signer: LaneSigner) -> None:
    await assert_replaced_authentication_obeyed(target, orders.app, signer)

@pytest.mark.parametrize("roles", [["provider"], [], ["operator"], ["regulator"]])
async def test_a_token_without_the_buyer_role_is_refused_as_by_the_route(
        target: LaneTarget, signer: LaneSigner, roles: list[str]) -> None:
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims(roles=roles))))
    assert lane.resp.status_code == 403, lane.resp.text
    assert (lane.verified, route.verified) == (2, 1)  # the lane declined: the route refused
    assert lane.comparable() == route.comparable()
    assert lane.rows == {}


@pytest.mark.parametrize(("path", "org", "status"), [
    ("/v1/orders", "org_buyer_b", 404),  # another organisation's quote: the route's 404
    ("/v1/orders", None, 422),  # a buyer of no organisation: the route's rule
    ("/v1/quotes", None, 422),
])
async def test_a_buyer_token_for_the_wrong_org_is_refused_as_by_the_route(
        orders: Harness, monkeypatch: pytest.MonkeyPatch, signer: LaneSigner, path: str,
        org: str | None, status: int) -> None:
    target = lane_target(orders, monkeypatch, path)
    if target.prepare is not None:
        await target.prepare()
        target.prepare = None  # the same quote both times: the problem names it
    lane, route = await target.lane_and_route(bearer(signer.sign(signer.claims(org=org))))
    assert lane.resp.status_code == status, lane.resp.text
    assert lane.resp.headers["content-type"] == "application/problem+json"
    assert lane.verified == 1  # the lane took it: the refusal is the route's own code's
    assert lane.comparable() == route.comparable()
    assert lane.rows == {}
