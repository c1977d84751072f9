"""OAuth by the book (issue 14): RFC 7662 introspection with HTTP Basic client authentication,
RFC 8414 metadata naming introspection and revocation, a suspended organisation told apart from
a wrong secret (and audited), and self-service secret rotation with an overlap window."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from services.access.models import ApiClient
from shared.db import utcnow
from tests.access.conftest import basic, bearer, get_token, onboard
from tests.access.test_audit_events import outbox_events
from tests.support import RunningApp


async def token_status(access: RunningApp, client_id: str, secret: str) -> int:
    resp = await access.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                    headers=basic(client_id, secret))
    return resp.status_code


async def test_metadata_names_introspection_and_revocation(access: RunningApp) -> None:
    meta = (await access.client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["introspection_endpoint"].endswith("/oauth/introspect")
    assert meta["revocation_endpoint"].endswith("/oauth/revoke")
    for kind in ("introspection", "revocation"):
        assert "client_secret_basic" in meta[f"{kind}_endpoint_auth_methods_supported"]


async def test_introspection_takes_http_basic_client_authentication(
    access: RunningApp, operator_token: str
) -> None:
    provider = await onboard(access, operator_token, "Introspecting Provider", ["provider"])
    buyer = await onboard(access, operator_token, "Introspecting Buyer", ["buyer"])
    form = {"token": "not-a-token-of-ours"}
    ok = await access.client.post("/oauth/introspect", data=form,
                                  headers=basic(provider["client_id"], provider["client_secret"]))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"active": False} and ok.headers["cache-control"] == "no-store"
    wrong = await access.client.post("/oauth/introspect", data=form,
                                     headers=basic(provider["client_id"], "wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    not_allowed = await access.client.post("/oauth/introspect", data=form,
                                           headers=basic(buyer["client_id"], buyer["client_secret"]))
    assert not_allowed.status_code == 403
    # Bearer keeps working (the SDK and data services used it).
    token = await get_token(access, provider["client_id"], provider["client_secret"])
    assert (await access.client.post("/oauth/introspect", data=form, headers=bearer(token))).status_code == 200
    none = await access.client.post("/oauth/introspect", data=form)
    assert none.status_code == 401


async def test_a_suspended_organisation_is_told_apart_from_a_wrong_secret(
    access: RunningApp, operator_token: str
) -> None:
    client = await onboard(access, operator_token, "Sanctioned Co", ["buyer"])
    await access.client.post(f"/v1/organisations/{client['organisation_id']}/suspend",
                             json={"reason": "sanctions"}, headers=bearer(operator_token))
    resp = await access.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                    headers=basic(client["client_id"], client["client_secret"]))
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    assert "organisation" in resp.json()["error_description"]
    assert "suspended" in resp.json()["error_description"]
    wrong = await access.client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                     headers=basic(client["client_id"], "wrong"))
    assert "suspended" not in wrong.json()["error_description"]  # nothing told without the secret
    refused = [e for e in await outbox_events(access) if e.action == "access.token.refused"
               and e.subject.id == client["client_id"]]
    assert [e.outcome for e in refused] == ["denied", "failure"]
    assert refused[0].details["reason"] == "organisation_suspended"
    assert refused[0].actor.org == client["organisation_id"]


async def test_self_service_rotation_keeps_the_old_secret_until_the_chosen_time(
    access: RunningApp, operator_token: str
) -> None:
    client = await onboard(access, operator_token, "Rotating Self Co", ["buyer"])
    cid, old = client["client_id"], client["client_secret"]
    token = await get_token(access, cid, old)
    resp = await access.client.post("/v1/clients/me/rotate-secret", json={"old_secret_expires_in": 3600},
                                    headers=bearer(token))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    new = body["client_secret"]
    assert new != old and body["client_id"] == cid and body["previous_secret_expires_at"]
    assert await token_status(access, cid, new) == 200
    assert await token_status(access, cid, old) == 200  # the overlap
    # When the chosen time has passed, the old secret stops.
    async with access.db.sessionmaker() as s, s.begin():
        await s.execute(update(ApiClient).where(ApiClient.client_id == cid)
                        .values(previous_secret_expires_at=utcnow() - timedelta(seconds=1)))
    assert await token_status(access, cid, old) == 401
    assert await token_status(access, cid, new) == 200
    events = [e for e in await outbox_events(access) if e.action == "access.client.secret_rotated"]
    assert events[-1].subject.id == cid and events[-1].details["old_secret_expires_in"] == 3600


async def test_self_service_rotation_bounds_and_only_two_secrets(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Bounded Co", ["buyer"])
    cid, first = client["client_id"], client["client_secret"]
    token = await get_token(access, cid, first)
    too_long = await access.client.post("/v1/clients/me/rotate-secret",
                                        json={"old_secret_expires_in": 8 * 86400}, headers=bearer(token))
    assert too_long.status_code == 422
    second = (await access.client.post("/v1/clients/me/rotate-secret", json={"old_secret_expires_in": 600},
                                       headers=bearer(token))).json()["client_secret"]
    third = (await access.client.post("/v1/clients/me/rotate-secret", json={"old_secret_expires_in": 600},
                                      headers=bearer(token))).json()["client_secret"]
    # Never more than two valid secrets: the newest and the one it replaced.
    assert [await token_status(access, cid, s) for s in (first, second, third)] == [401, 200, 200]
    # 0 ends the old secret at once.
    now = (await access.client.post("/v1/clients/me/rotate-secret", json={"old_secret_expires_in": 0},
                                    headers=bearer(token))).json()
    assert now["previous_secret_expires_at"] is None
    assert [await token_status(access, cid, s) for s in (third, now["client_secret"])] == [401, 200]


async def test_every_service_declares_the_client_credentials_flow(access: RunningApp) -> None:
    spec = (await access.client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    flows = [s["flows"]["clientCredentials"] for s in schemes.values() if s["type"] == "oauth2"]
    assert flows and flows[0]["tokenUrl"].endswith("/oauth/token")
    me = spec["paths"]["/v1/me"]["get"]["security"]
    assert any(name in schemes and schemes[name]["type"] == "oauth2" for req in me for name in req)


async def test_another_services_docs_may_ask_for_a_token_in_the_browser(access: RunningApp) -> None:
    origin = access.settings.catalog_url.rstrip("/")
    pre = await access.client.options("/oauth/token", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
    stranger = await access.client.options("/oauth/token", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert stranger.headers.get("access-control-allow-origin") != "https://evil.example"
