"""Operator endpoints for organisations and API clients."""

from __future__ import annotations

from tests.access.conftest import bearer, get_token, onboard
from tests.support import RunningApp


async def test_operator_creates_and_lists_organisations(access: RunningApp, operator_token: str) -> None:
    for name, roles in [("Prov A", ["provider"]), ("Buyer B", ["buyer"]), ("Reg C", ["regulator"])]:
        resp = await access.client.post("/v1/organisations", json={"name": name, "roles": roles},
                                        headers=bearer(operator_token))
        assert resp.status_code == 201
    page = (await access.client.get("/v1/organisations?role=buyer", headers=bearer(operator_token))).json()
    assert [o["name"] for o in page["items"]] == ["Buyer B"]


async def test_organisation_list_paginates_with_cursor(access: RunningApp, operator_token: str) -> None:
    for i in range(5):
        await access.client.post("/v1/organisations", json={"name": f"Org {i}", "roles": ["buyer"]},
                                 headers=bearer(operator_token))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "role": "buyer", **({"cursor": cursor} if cursor else {})}
        page = (await access.client.get("/v1/organisations", params=params,
                                        headers=bearer(operator_token))).json()
        seen += [o["name"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"Org {i}" for i in range(5)]


async def test_bad_cursor_is_a_400_problem(access: RunningApp, operator_token: str) -> None:
    resp = await access.client.get("/v1/organisations?cursor=%%%", headers=bearer(operator_token))
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"].endswith("/invalid-cursor")


async def test_duplicate_organisation_name_is_409(access: RunningApp, operator_token: str) -> None:
    body = {"name": "Twin", "roles": ["buyer"]}
    assert (await access.client.post("/v1/organisations", json=body, headers=bearer(operator_token))).status_code == 201
    resp = await access.client.post("/v1/organisations", json=body, headers=bearer(operator_token))
    assert resp.status_code == 409
    assert "already exists" in resp.json()["detail"]


async def test_unknown_role_is_a_field_level_validation_problem(access: RunningApp, operator_token: str) -> None:
    resp = await access.client.post("/v1/organisations", json={"name": "X", "roles": ["king"]},
                                    headers=bearer(operator_token))
    assert resp.status_code == 422
    body = resp.json()
    assert body["errors"][0]["field"] == "roles.0"
    assert body["errors"][0]["location"] == "body"


async def test_client_roles_must_be_held_by_the_organisation(access: RunningApp, operator_token: str) -> None:
    org = (await access.client.post("/v1/organisations", json={"name": "Shop", "roles": ["buyer"]},
                                    headers=bearer(operator_token))).json()
    resp = await access.client.post(f"/v1/organisations/{org['id']}/clients",
                                    json={"name": "sneaky", "roles": ["operator"]},
                                    headers=bearer(operator_token))
    assert resp.status_code == 422
    assert resp.json()["rule"] == "client-roles-subset-of-organisation"


async def test_client_secret_is_shown_once_and_stored_hashed(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Hashy", ["buyer"])
    fetched = (await access.client.get(f"/v1/clients/{client['client_id']}",
                                       headers=bearer(operator_token))).json()
    assert "client_secret" not in fetched
    from sqlalchemy import select

    from services.access.models import ApiClient
    async with access.db.sessionmaker() as s:
        stored = await s.scalar(select(ApiClient.secret_hash).where(ApiClient.client_id == client["client_id"]))
    assert stored is not None and stored.startswith("$argon2id$")
    assert client["client_secret"] not in stored


async def test_buyer_token_on_operator_route_is_403_problem(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Curious Buyer", ["buyer"])
    token = await get_token(access, client["client_id"], client["client_secret"])
    resp = await access.client.get("/v1/organisations", headers=bearer(token))
    assert resp.status_code == 403
    assert resp.headers["content-type"] == "application/problem+json"
    assert "operator" in resp.json()["detail"]


async def test_unknown_organisation_is_404_problem(access: RunningApp, operator_token: str) -> None:
    resp = await access.client.get("/v1/organisations/org_nope", headers=bearer(operator_token))
    assert resp.status_code == 404
    assert resp.json()["type"].endswith("/organisation-not-found")


async def test_suspend_twice_is_409(access: RunningApp, operator_token: str) -> None:
    client = await onboard(access, operator_token, "Twice", ["buyer"])
    url = f"/v1/organisations/{client['organisation_id']}/suspend"
    assert (await access.client.post(url, json={"reason": "a"}, headers=bearer(operator_token))).status_code == 200
    assert (await access.client.post(url, json={"reason": "a"}, headers=bearer(operator_token))).status_code == 409
