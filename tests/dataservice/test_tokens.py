"""Token attacks on the data service: each one must fail for the attacker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
from cryptography.hazmat.primitives import serialization

from services.dataservice.runtime import DataServiceState
from shared.runtime import runtime_of
from tests.dataservice.conftest import HEALTH, TRANSIT, TokenFactory, bearer, query
from tests.support import RunningApp, TestKeys

COUNT = {"aggregates": [{"fn": "count"}], "group_by": ["district"]}


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(ds: RunningApp) -> dict[str, object]:
    now = int(time.time())
    return {"iss": "http://127.0.0.1:8003", "sub": "cli_buyer", "aud": ds.settings.token_audience,
            "iat": now, "exp": now + 600, "jti": "j1", "scope": "query", "ent": "ent_test",
            "product": HEALTH, "version": 1, "purpose": "research", "grade": "L3_sensitive",
            "limits": {"max_rows": 100, "min_group_size": 10}}


async def test_valid_data_token_answers(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), COUNT)
    assert resp.status_code == 200, resp.text


async def test_token_for_another_data_service_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(aud="http://other-provider.example:8010"), COUNT)
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")


async def test_expired_token_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(ttl=-120), COUNT)
    assert resp.status_code == 401
    assert "expired" in resp.json()["detail"]


async def test_alg_none_token_is_refused(ds: RunningApp, test_keys: TestKeys) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'at+jwt', 'kid': test_keys.kid})}.{_b64(_claims(ds))}."
    resp = await query(ds, token, COUNT)
    assert resp.status_code == 401


async def test_hs256_token_signed_with_the_public_key_is_refused(ds: RunningApp, test_keys: TestKeys) -> None:
    # The classic key-confusion forgery: HMAC keyed with the RSA public key in PEM form.
    private = serialization.load_pem_private_key(test_keys.private_pem, password=None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': test_keys.kid})}.{_b64(_claims(ds))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    resp = await query(ds, token, COUNT)
    assert resp.status_code == 401
    assert "HS256" in resp.json()["detail"]


async def test_platform_token_without_at_jwt_type_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(typ="JWT"), COUNT)
    assert resp.status_code == 401


async def test_token_without_query_scope_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(scope="buyer"), COUNT)
    assert resp.status_code == 401


async def test_token_from_another_issuer_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(iss="http://evil.example"), COUNT)
    assert resp.status_code == 401


async def test_token_without_entitlement_claims_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(ent=None), COUNT)
    assert resp.status_code == 401


async def test_token_for_product_a_cannot_query_product_b(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {**COUNT, "product": HEALTH})
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/wrong-product")
    schema = await ds.client.get("/v1/schema", params={"product": HEALTH},
                                 headers=bearer(data_token(TRANSIT)))
    assert schema.status_code == 403


async def test_token_for_a_product_this_service_does_not_serve_is_refused(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token("prd_someone_else"), COUNT)
    assert resp.status_code == 403
    assert "does not serve" in resp.json()["detail"]


async def test_token_graded_below_the_mapping_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(HEALTH, grade="L1_public"), {"select": ["district"], "limit": 5})
    assert resp.status_code == 403
    assert resp.json()["type"].endswith("/grade-mismatch")


async def test_revoked_token_and_entitlement_stop_working_after_a_feed_poll(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(jti="jti-revoked")
    other = data_token(ent="ent_revoked")
    assert (await query(ds, token, COUNT)).status_code == 200
    pages = {
        None: {"items": [{"kind": "token", "id": "jti-revoked", "revoked_at": "2026-11-28T00:00:00Z",
                          "reason": "buyer asked"}], "next_cursor": "c1"},
        "c1": {"items": [{"kind": "entitlement", "id": "ent_revoked",
                          "revoked_at": "2026-11-28T00:00:01Z", "reason": "refund"}],
               "next_cursor": "c2"},
        "c2": {"items": [], "next_cursor": "c2"},
    }
    seen: list[str | None] = []

    def feed(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/revocations"
        since = request.url.params.get("since")
        seen.append(since)
        return httpx.Response(200, json=pages[since])

    poller = ds.state(DataServiceState).revocation_poller
    async with httpx.AsyncClient(transport=httpx.MockTransport(feed)) as http:
        poller.http = http
        assert await poller.poll_once() == 2
    assert seen == [None, "c1", "c2"]
    for revoked in (token, other):
        resp = await query(ds, revoked, COUNT)
        assert resp.status_code == 401
        assert "revoked" in resp.json()["detail"]
    assert (await query(ds, data_token(), COUNT)).status_code == 200


async def test_unreachable_revocation_feed_keeps_the_last_known_list(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    poller = ds.state(DataServiceState).revocation_poller
    poller.revocations.add("token", "jti-old")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("access is down")

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        poller.http = http
        try:
            await poller.poll_once()
        except httpx.HTTPError:
            pass
        else:  # pragma: no cover
            raise AssertionError("a down feed must raise so poll_and_log logs it")
    assert (await query(ds, data_token(jti="jti-old"), COUNT)).status_code == 401


async def test_revocation_poll_interval_cannot_exceed_30_seconds() -> None:
    import pydantic

    from services.dataservice.settings import DataServiceSettings

    try:
        DataServiceSettings(revocation_poll_seconds=45)
    except pydantic.ValidationError:
        return
    raise AssertionError("a 45 s poll interval must be refused")


async def test_token_that_lives_longer_than_15_minutes_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(ttl=24 * 3600), COUNT)
    assert resp.status_code == 401
    assert "15 minutes" in resp.json()["detail"]


async def test_openapi_documents_the_query_endpoints(ds: RunningApp) -> None:
    spec = (await ds.client.get("/openapi.json")).json()
    post = spec["paths"]["/v1/query"]["post"]
    assert post["summary"] and {"401", "403", "422"} <= set(post["responses"])
    assert "aggregate (L3)" in post["requestBody"]["content"]["application/json"]["examples"]
    assert spec["paths"]["/v1/schema"]["get"]["summary"]


async def test_suspended_entitlement_works_again_once_reinstated(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(ent="ent_paused")
    revocations = ds.state(DataServiceState).revocations
    revocations.add_item({"kind": "entitlement", "id": "ent_paused", "event": "suspended"})
    resp = await query(ds, token, COUNT)
    assert resp.status_code == 401 and "suspended" in resp.json()["detail"]
    revocations.add_item({"kind": "entitlement", "id": "ent_paused", "event": "reinstated"})
    assert (await query(ds, token, COUNT)).status_code == 200
    revocations.add_item({"kind": "entitlement", "id": "ent_paused", "event": "revoked"})
    revocations.add_item({"kind": "entitlement", "id": "ent_paused", "event": "reinstated"})
    assert (await query(ds, token, COUNT)).status_code == 401  # revocation is final


async def test_revoked_tokens_are_forgotten_after_they_expire(ds: RunningApp) -> None:
    revocations = ds.state(DataServiceState).revocations
    revocations.add_item({"kind": "token", "id": "old", "event": "revoked",
                          "expires_at": "2020-01-01T00:00:00Z"})
    revocations.add_item({"kind": "token", "id": "live", "event": "revoked",
                          "expires_at": "2999-01-01T00:00:00Z"})
    revocations.forget_expired()
    assert set(revocations.tokens) == {"live"}


async def test_token_without_max_rows_uses_the_mapping_cap(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT, limits={"max_rows": None}), {"select": ["trips"], "limit": 500})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["rows"]) == 50


async def test_service_starts_and_answers_while_access_is_unreachable(
    service_app, demo_data_url: str, products_file, test_keys: TestKeys
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    async with service_app("dataservice", data_url=demo_data_url, products_file=str(products_file),
                           access_url=f"http://127.0.0.1:{port}", service_client_secret="secret") as svc:
        assert time.monotonic() - t0 < 10
        assert runtime_of(svc.app).relays.get("access") is not None
        token = test_keys.token(typ="at+jwt", aud=svc.settings.token_audience, iss=f"http://127.0.0.1:{port}",
                                scope="query", ent="ent_x", product=HEALTH, version=1, purpose="research",
                                grade="L3_sensitive", limits={"max_rows": 100})
        assert (await query(svc, token, COUNT)).status_code == 200


async def test_a_cached_token_is_still_refused_once_revoked(ds: RunningApp, data_token: TokenFactory) -> None:
    """The verifier remembers the token after its first use; the revocation check (its
    extra_check) still runs on every later use, so a revocation stops it at once."""
    token = data_token(jti="jti-cached")
    assert (await query(ds, token, COUNT)).status_code == 200
    cache = ds.runtime.verifier.cache
    assert cache is not None and await cache.get(token, ds.runtime.verifier.keys) is not None
    ds.state(DataServiceState).revocations.add_item({"kind": "token", "id": "jti-cached", "event": "revoked",
                                       "expires_at": "2999-01-01T00:00:00Z"})
    resp = await query(ds, token, COUNT)
    assert resp.status_code == 401 and "no longer grants access" in resp.json()["detail"]


async def test_operators_see_the_dead_letters_with_a_platform_token(
        ds: RunningApp, data_token: TokenFactory, test_keys: TestKeys) -> None:
    operator = test_keys.token(roles=["operator"], org="org_platform")
    resp = await ds.client.get("/v1/outbox/dead-letters", headers={"Authorization": f"Bearer {operator}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["items"] == []
    refused = await ds.client.get("/v1/outbox/dead-letters", headers={"Authorization": f"Bearer {data_token()}"})
    assert refused.status_code == 401
