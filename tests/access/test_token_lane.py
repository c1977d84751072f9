"""The data-token lane (services/access/token_lane.py): which requests it answers before
FastAPI routes them, and that what it answers is exactly the route's answer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jose import jwt

from services.access import token_lane
from services.access.catalog_client import CatalogClient
from services.access.routers.entitlements import get_catalog
from services.access.runtime import AccessState
from tests.access.entitlement_support import Deal, deal_fixture, market_fixture, problem_type  # noqa: F401

#: Headers that differ between any two answers (the token's length, the request).
VARYING = {"content-length", "x-request-id"}


@pytest.fixture
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The entitlement ids the lane issued for (the route calls its own issue_response)."""
    calls: list[str] = []
    real = token_lane.issue_response

    async def spy(state: AccessState, caller: Any, catalog: CatalogClient, ent_id: str,
                  body: Any) -> Any:
        calls.append(ent_id)
        return await real(state, caller, catalog, ent_id, body)

    monkeypatch.setattr(token_lane, "issue_response", spy)
    return calls


def _headers(resp: Any) -> list[tuple[str, str]]:
    return [(k, v) for k, v in resp.headers.multi_items() if k not in VARYING]


async def _counted(deal: Deal, status: int) -> float:
    metrics = (await deal.market.client.get("/metrics")).text
    pattern = (r'sluice_http_requests_total\{[^}]*route="/v1/entitlements/\{entitlement_id\}/tokens"'
               rf'[^}}]*status="{status}"\}} (\S+)')
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


async def test_the_lane_answers_a_plain_issue_exactly_as_the_route_does(deal: Deal, lane_calls: list[str]) -> None:
    m = deal.market
    url = f"/v1/entitlements/{deal.ent['id']}/tokens"
    lane = await m.client.post(url, headers=deal.buyer.headers)
    assert lane_calls == [deal.ent["id"]]
    route = await m.client.post(url, json={}, headers=deal.buyer.headers)  # a body: the route's
    assert lane_calls == [deal.ent["id"]]
    assert lane.status_code == route.status_code == 201
    assert _headers(lane) == _headers(route)
    assert list(lane.json()) == list(route.json())
    assert {k for k in lane.json() if lane.json()[k] != route.json()[k]} <= {"access_token", "jti", "expires_at"}
    tokens = [r.json()["access_token"] for r in (lane, route)]
    assert jwt.get_unverified_header(tokens[0]) == jwt.get_unverified_header(tokens[1])
    claims = [jwt.get_unverified_claims(t) for t in tokens]
    assert list(claims[0]) == list(claims[1])
    assert {k for k in claims[0] if claims[0][k] != claims[1][k]} <= {"jti", "iat", "exp"}
    issued = (await m.events("access.data_token.issued"))[-2:]
    assert [e.details["jti"] for e in issued] == [lane.json()["jti"], route.json()["jti"]]
    assert issued[0].actor == issued[1].actor and issued[0].subject == issued[1].subject
    assert issued[0].request_id == lane.headers["x-request-id"]
    assert await _counted(deal, 201) == 2  # both under the route's template


async def test_a_refusal_in_the_lane_is_the_routes_problem_and_is_audited(deal: Deal, lane_calls: list[str]) -> None:
    m = deal.market
    url = f"/v1/entitlements/{deal.ent['id']}/tokens"
    await m.client.post(f"/v1/entitlements/{deal.ent['id']}/suspend", json={"reason": "x"},
                        headers=m.operator)
    lane = await m.client.post(url, headers=deal.buyer.headers)
    route = await m.client.post(url, json={}, headers=deal.buyer.headers)
    assert lane_calls == [deal.ent["id"]]
    assert lane.status_code == route.status_code == 403
    assert problem_type(lane) == "entitlement-suspended"
    assert lane.json() == route.json() and _headers(lane) == _headers(route)
    refused = (await m.events("access.data_token.refused"))[-2:]
    assert refused[0].details == refused[1].details == {"problem": "entitlement-suspended", "status": 403}
    # Another buyer's entitlement is a 404 in the lane too, and audited as denied.
    intruder = await m.party(["buyer"])
    lane = await m.client.post(url, headers=intruder.headers)
    route = await m.client.post(url, json={}, headers=intruder.headers)
    assert lane.status_code == route.status_code == 404
    assert lane.json() == route.json() and problem_type(lane) == "entitlement-not-found"
    assert (await m.events("access.data_token.refused"))[-1].outcome == "denied"
    assert await _counted(deal, 403) == 2 and await _counted(deal, 404) == 2


async def test_the_lane_leaves_everything_else_to_the_route(deal: Deal, lane_calls: list[str]) -> None:
    m = deal.market
    url = f"/v1/entitlements/{deal.ent['id']}/tokens"
    provider = deal.provider.headers
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({}, 401, None),                                                    # no token
        ({"headers": {"Authorization": "Bearer not-a-jwt"}}, 401, "invalid-token"),
        ({"headers": {"Authorization": "Basic dXNlcjpwdw=="}}, 401, None),  # not bearer
        ({"headers": provider}, 403, "forbidden"),                          # not a buyer
        ({"headers": deal.buyer.headers, "params": {"expires": "60"}}, 422, "validation-error"),
        ({"headers": deal.buyer.headers, "json": {"expires_in": 5}}, 422, "validation-error"),
    ]
    for kwargs, status, problem in cases:
        resp = await m.client.post(url, **kwargs)
        assert resp.status_code == status, (kwargs, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        if problem:
            assert problem_type(resp) == problem
    shorter = await m.client.post(url, json={"expires_in": 60}, headers=deal.buyer.headers)
    assert shorter.status_code == 201 and shorter.json()["expires_in"] == 60
    nested = await m.client.post(f"/v1/entitlements/{deal.ent['id']}/x/tokens", headers=deal.buyer.headers)
    assert nested.status_code == 404
    assert lane_calls == []


async def test_an_overridden_dependency_sends_the_issue_to_the_route(deal: Deal, lane_calls: list[str]) -> None:
    m = deal.market
    catalog = m.svc.state(AccessState).catalog
    asked: list[int] = []

    async def override() -> CatalogClient:
        asked.append(1)
        return catalog

    m.svc.app.dependency_overrides[get_catalog] = override
    try:
        assert (await m.token(deal.buyer, deal.ent["id"]))["entitlement_id"] == deal.ent["id"]
    finally:
        del m.svc.app.dependency_overrides[get_catalog]
    assert asked == [1] and lane_calls == []
    await m.token(deal.buyer, deal.ent["id"])
    assert lane_calls == [deal.ent["id"]]
