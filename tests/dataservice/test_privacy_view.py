"""The regulator's view of the privacy spend: per product and period, by organisation and
entitlement, and every charge."""

from __future__ import annotations

from tests.dataservice.conftest import HEALTH, TokenFactory, bearer, query
from tests.support import RunningApp, TestKeys

COUNT = {"select": ["district"], "aggregates": [{"fn": "count"}], "group_by": ["district"]}


async def _spend(ds: RunningApp, data_token: TokenFactory) -> None:
    for ent, org, eps in (("ent_1", "org_a", 0.25), ("ent_1", "org_a", 0.25), ("ent_2", "org_a", 0.1),
                          ("ent_3", "org_b", 0.5)):
        resp = await query(ds, data_token(ent=ent, org=org), {**COUNT, "epsilon": eps})
        assert resp.status_code == 200, resp.text


async def test_the_regulator_sees_total_spent_and_who_spent_it(
    ds: RunningApp, data_token: TokenFactory, test_keys: TestKeys
) -> None:
    await _spend(ds, data_token)
    regulator = test_keys.token(roles=["regulator"], org="org_reg")
    resp = await ds.client.get("/v1/privacy/budgets", headers=bearer(regulator))
    assert resp.status_code == 200, resp.text
    [product] = resp.json()["items"]
    assert (product["product_id"], product["catalog_product_ids"]) == (HEALTH, [HEALTH])
    assert (product["epsilon_total"], product["epsilon_spent"], product["answers"]) == (100, 1.1, 4)
    assert product["epsilon_remaining"] == 98.9
    assert [(o["organisation_id"], o["epsilon"], o["answers"]) for o in product["by_organisation"]] == \
        [("org_a", 0.6, 3), ("org_b", 0.5, 1)]
    assert {e["entitlement_id"]: e["epsilon"] for e in product["by_entitlement"]} == \
        {"ent_1": 0.5, "ent_2": 0.1, "ent_3": 0.5}


async def test_every_charge_is_listed_page_by_page(
    ds: RunningApp, data_token: TokenFactory, test_keys: TestKeys
) -> None:
    await _spend(ds, data_token)
    headers = bearer(test_keys.token(roles=["operator"], org="org_op"))
    seen, cursor = [], None
    while True:
        params = {"product_id": HEALTH, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await ds.client.get("/v1/privacy/charges", params=params, headers=headers)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(c["entitlement_id"], c["epsilon"]) for c in seen] == \
        [("ent_1", 0.25), ("ent_1", 0.25), ("ent_2", 0.1), ("ent_3", 0.5)]
    assert all(c["usage_id"] and c["jti"] for c in seen)


async def test_buyers_and_data_tokens_cannot_see_the_spend(
    ds: RunningApp, data_token: TokenFactory, test_keys: TestKeys
) -> None:
    buyer = await ds.client.get("/v1/privacy/budgets", headers=bearer(test_keys.token(roles=["buyer"])))
    assert buyer.status_code == 403 and buyer.json()["required_roles"] == ["operator", "regulator"]
    assert (await ds.client.get("/v1/privacy/budgets", headers=bearer(data_token()))).status_code == 401
    assert (await ds.client.get("/v1/privacy/budgets")).status_code == 401


async def test_a_forged_cursor_is_a_400(ds: RunningApp, test_keys: TestKeys) -> None:
    resp = await ds.client.get("/v1/privacy/charges", params={"product_id": HEALTH, "cursor": "eyJpZCI6IngifQ"},
                               headers=bearer(test_keys.token(roles=["regulator"])))
    assert resp.status_code == 400 and resp.json()["type"].endswith("/invalid-cursor")
