"""Real processes: the services boot, tokens from /oauth/token work across
services (verified offline via the JWKS, through a key rotation), every route
answers every kind of caller as docs/security.md says, and the services' audit
events reach the audit service through their outboxes."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from jose import jwt

from tests.e2e.cluster import OPERATOR_ID, Cluster
from tests.e2e.market import Market, settled_log, wait_until
from tests.e2e.route_auth import Callers, routes, violations


def test_every_service_is_healthy_and_ready(cluster: Cluster) -> None:
    for name, url in cluster.urls.items():
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok", name
        assert httpx.get(f"{url}/readyz").status_code == 200, name
        assert "sluice_http_requests_total" in httpx.get(f"{url}/metrics").text


def test_token_from_access_verifies_with_the_published_jwks(cluster: Cluster) -> None:
    token = cluster.operator_token()
    jwks = httpx.get(f"{cluster.urls['access']}/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="sluice-api",
                        issuer=cluster.urls["access"])
    assert claims["sub"] == OPERATOR_ID


def test_other_services_accept_the_token_over_http(cluster: Cluster) -> None:
    token = cluster.operator_token()
    for name in ("catalog", "orders", "audit"):
        resp = httpx.get(f"{cluster.urls[name]}/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, f"{name}: {resp.text}"
        assert resp.json()["roles"] == ["operator"]


def test_request_id_is_echoed(cluster: Cluster) -> None:
    resp = httpx.get(f"{cluster.urls['catalog']}/healthz", headers={"X-Request-ID": "e2e-rid-1"})
    assert resp.headers["x-request-id"] == "e2e-rid-1"


@pytest.fixture(scope="module")
def data_token(market: Market) -> Callable[[], str]:
    """Data-access tokens for a free L1 entitlement the buyer holds on the cluster's data service."""
    plan = market.transit["plans"][0]
    quote = market.buyer.quote(market.transit["id"], market.transit["version"], plan["id"])
    order = market.wait_for_status(market.buyer.create_order(quote["id"], "planning")["id"], "fulfilled")
    return lambda: str(market.buyer.issue_data_token(order["entitlement_id"])["access_token"])


def service_token(cluster: Cluster) -> str:
    resp = httpx.post(f"{cluster.urls['access']}/oauth/token", data={"grant_type": "client_credentials"},
                      auth=("svc-catalog", cluster.service_secrets["catalog"]), timeout=10)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def test_every_route_answers_each_kind_of_caller_as_docs_security_md_says(
        market: Market, data_token: Callable[[], str]) -> None:
    """From each service's OpenAPI: every route that needs a token answers 401 without one
    and 401 to a token of the other kind, does not refuse a token of the right kind and an
    admitted role (the control), and answers 403 to every role its row does not list."""
    callers = Callers(
        platform={"provider": market.provider.bearer(), "buyer": market.buyer.bearer(),
                  "regulator": market.regulator.bearer(), "operator": market.operator.bearer(),
                  "service": service_token(market.cluster)},
        data_access=data_token())
    found: list[str] = []
    checked = 0
    with httpx.Client(timeout=20) as http:
        for route in routes(market.cluster.urls):
            found += violations(http, route, callers)
            checked += 1
    assert checked > 50, f"only {checked} routes found: is /openapi.json served?"
    assert not found, f"{len(found)} answers differ from docs/security.md:\n" + "\n".join(found)


def test_a_rotated_key_is_picked_up_by_every_service(market: Market, data_token: Callable[[], str]) -> None:
    cluster = market.cluster

    def accepted(name: str, token: str) -> bool:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{cluster.urls[name]}/v1/me", headers=headers, timeout=10).status_code == 200

    def tokens() -> dict[str, str]:  # a platform token for each platform service, a data token for the data service
        platform, data = cluster.operator_token(), data_token()
        return {name: data if name == "dataservice" else platform for name in cluster.urls}

    old = tokens()
    for name, token in old.items():  # every service has fetched the current keys
        assert accepted(name, token), name
    resp = httpx.post(f"{cluster.urls['access']}/v1/signing-keys/rotate",
                      headers={"Authorization": f"Bearer {old['access']}"})
    assert resp.status_code == 201
    fresh = tokens()
    assert {jwt.get_unverified_header(t)["kid"] for t in fresh.values()} == {resp.json()["kid"]}
    # An unknown kid makes each service refetch the JWKS (throttled to 1 s in this cluster).
    for name, token in fresh.items():
        wait_until(lambda name=name, token=token: accepted(name, token), f"{name} to accept the new key", 10)
    # Tokens signed with the old key still work everywhere until they expire.
    for name, token in old.items():
        assert accepted(name, token), name


def test_every_services_audit_events_reach_the_log_through_its_outbox(market: Market) -> None:
    org = market.operator.create_organisation(f"Outbox Check {uuid.uuid4().hex[:6]}", ["buyer"])
    [created] = market.wait_for_trail({org["id"]: ["access.organisation.created"]})
    assert created["service"] == "access" and created["actor"]["role"] == "operator"
    # And every event any service's outbox holds is in the log once, nothing else.
    log = settled_log(market)
    assert {e["service"] for e in log} >= {"access", "catalog"}
