"""OAuth 2.0 client credentials at POST /oauth/token (RFC 6749)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from jose import jwt

from tests.access.conftest import OPERATOR_ID, OPERATOR_SECRET, basic, bearer, get_token, onboard
from tests.support import RunningApp


async def test_token_with_client_secret_basic_verifies_against_the_jwks(access: RunningApp) -> None:
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers=basic(OPERATOR_ID, OPERATOR_SECRET),
    )
    assert resp.status_code == 200
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    jwks = (await access.client.get("/.well-known/jwks.json")).json()
    header = jwt.get_unverified_header(body["access_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(body["access_token"], key, algorithms=["RS256"], audience="sluice-api",
                        issuer=access.settings.token_issuer)
    assert claims["sub"] == OPERATOR_ID
    assert claims["roles"] == ["operator"]
    assert claims["exp"] - claims["iat"] == 900


async def test_token_with_client_secret_post(access: RunningApp) -> None:
    resp = await access.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": OPERATOR_ID,
              "client_secret": OPERATOR_SECRET},
    )
    assert resp.status_code == 200, resp.text


async def test_wrong_secret_is_invalid_client_401(access: RunningApp) -> None:
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(OPERATOR_ID, "nope")
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.headers["www-authenticate"].startswith("Basic")


async def test_unknown_client_is_invalid_client_401(access: RunningApp) -> None:
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic("ghost", "x")
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


async def test_unknown_grant_is_unsupported_grant_type_400(access: RunningApp) -> None:
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "password"}, headers=basic(OPERATOR_ID, OPERATOR_SECRET)
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "unsupported_grant_type"


async def test_missing_grant_type_is_invalid_request(access: RunningApp) -> None:
    resp = await access.client.post("/oauth/token", data={}, headers=basic(OPERATOR_ID, OPERATOR_SECRET))
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"


async def test_json_body_is_invalid_request_not_a_500(access: RunningApp) -> None:
    resp = await access.client.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"


async def test_two_authentication_methods_are_refused(access: RunningApp) -> None:
    resp = await access.client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": OPERATOR_ID,
              "client_secret": OPERATOR_SECRET},
        headers=basic(OPERATOR_ID, OPERATOR_SECRET),
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_request"


async def test_scope_narrows_roles_and_unknown_scope_is_invalid_scope(
    access: RunningApp, operator_token: str
) -> None:
    client = await onboard(access, operator_token, "Dual Co", ["provider", "buyer"])
    narrowed = await get_token(access, client["client_id"], client["client_secret"], scope="buyer")
    assert jwt.get_unverified_claims(narrowed)["roles"] == ["buyer"]
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "operator"},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_scope"


async def test_basic_credentials_are_form_urldecoded(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Encoded Co", ["buyer"])
    # RFC 6749 §2.3.1: the id and secret are form-urlencoded inside Basic.
    encoded_secret = client["client_secret"].replace("-", "%2D")
    assert await get_token(access, client["client_id"], encoded_secret)


async def test_server_metadata_follows_rfc_8414(access: RunningApp) -> None:
    meta = (await access.client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == access.settings.token_issuer
    assert meta["token_endpoint"].endswith("/oauth/token")
    assert meta["jwks_uri"].endswith("/.well-known/jwks.json")
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post"}


async def test_suspended_client_gets_no_token(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Suspended Co", ["buyer"])
    resp = await access.client.post(f"/v1/clients/{client['client_id']}/suspend",
                                    json={"reason": "leaked secret"}, headers=bearer(operator_token))
    assert resp.status_code == 200
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert resp.status_code == 401


async def test_suspended_organisation_gets_no_token(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Rogue Co", ["buyer"])
    await access.client.post(f"/v1/organisations/{client['organisation_id']}/suspend",
                             json={"reason": "sanctions"}, headers=bearer(operator_token))
    resp = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


async def test_rotated_secret_replaces_the_old_one(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Rotating Co", ["buyer"])
    resp = await access.client.post(f"/v1/clients/{client['client_id']}/rotate-secret",
                                    headers=bearer(operator_token))
    assert resp.status_code == 200
    new_secret = resp.json()["client_secret"]
    assert new_secret != client["client_secret"]
    assert await get_token(access, client["client_id"], new_secret)
    old = await access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"},
        headers=basic(client["client_id"], client["client_secret"]),
    )
    assert old.status_code == 401


async def test_signing_key_rotation_keeps_old_tokens_valid(access: RunningApp, operator_token: str) -> None:
    old_kid = jwt.get_unverified_header(operator_token)["kid"]
    resp = await access.client.post("/v1/signing-keys/rotate", headers=bearer(operator_token))
    assert resp.status_code == 201
    new_kid = resp.json()["kid"]
    assert new_kid != old_kid
    fresh = await get_token(access, OPERATOR_ID, OPERATOR_SECRET)
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    kids = {k["kid"] for k in (await access.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= kids
    # The token signed by the old key still works until it expires.
    assert (await access.client.get("/v1/me", headers=bearer(operator_token))).status_code == 200
    assert (await access.client.get("/v1/me", headers=bearer(fresh))).status_code == 200


async def test_bootstrap_generates_and_prints_a_secret_once(
    service_app, capsys  # type: ignore[no-untyped-def]
) -> None:
    async with service_app("access") as svc:
        printed = capsys.readouterr().err
        assert "client_secret:" in printed
        secret = printed.split("client_secret:")[1].split()[0]
        token = await get_token(svc, "operator", secret)
        me = await svc.client.get("/v1/me", headers=bearer(token))
        assert me.json()["roles"] == ["operator"]
    assert isinstance(httpx, object)


async def test_secret_checks_run_a_bounded_number_at_a_time(
        access: RunningApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of token requests must not put one Argon2id check per thread on the CPUs at once
    (the event loop starves, /readyz times out and the balancer drops the replica): at most
    MAX_CONCURRENT_HASHES run together; the rest wait their turn."""
    from services.access import client_secrets

    running, most = 0, 0
    lock = threading.Lock()
    real = client_secrets._verify

    def counted(hash_: str, secret: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.05)  # long enough for the others to pile up if nothing holds them back
            return real(hash_, secret)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(client_secrets, "_verify", counted)
    answers = await asyncio.gather(*(access.client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(OPERATOR_ID, OPERATOR_SECRET))
        for _ in range(12)))
    assert [a.status_code for a in answers] == [200] * 12
    assert most <= client_secrets.MAX_CONCURRENT_HASHES
