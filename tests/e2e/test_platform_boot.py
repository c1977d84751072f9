"""Real processes: the services boot, tokens from /oauth/token work across
services (verified offline via the JWKS), and access's audit events reach the
audit service through the outbox."""

from __future__ import annotations

import time

import httpx
from jose import jwt

from tests.e2e.cluster import OPERATOR_ID, Cluster


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


def test_rotated_key_is_picked_up_by_other_services(cluster: Cluster) -> None:
    operator = cluster.operator_token()
    resp = httpx.post(f"{cluster.urls['access']}/v1/signing-keys/rotate",
                      headers={"Authorization": f"Bearer {operator}"})
    assert resp.status_code == 201
    fresh = cluster.operator_token()
    assert jwt.get_unverified_header(fresh)["kid"] == resp.json()["kid"]
    # Unknown kid → the catalog refetches the JWKS (throttled to 1 s in this cluster).
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(f"{cluster.urls['catalog']}/v1/me", headers={"Authorization": f"Bearer {fresh}"})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 200, r.text
    # The old token still works everywhere until it expires.
    assert httpx.get(f"{cluster.urls['orders']}/v1/me",
                     headers={"Authorization": f"Bearer {operator}"}).status_code == 200
