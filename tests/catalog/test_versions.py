"""Versions are frozen: orders pin one, and later versions never change it. The internal API."""

from __future__ import annotations

from tests.catalog.conftest import ORG_A, Tokens, create, create_listed, l3_spec, spec
from tests.support import RunningApp


async def test_pinned_version_1_is_unchanged_after_version_2_is_published(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    pinned = (await catalog.client.get(f"/internal/v1/products/{pid}/versions/1", headers=tokens.service)).json()

    v1_plan_id = pinned["plans"][0]["id"]
    new_plans = [{**spec()["plans"][0], "id": v1_plan_id, "price": 5900},
                 {"name": "Yearly", "kind": "subscription", "currency": "EUR", "price": 59000, "period": "year"}]
    edited = await catalog.client.put(
        f"/v1/products/{pid}",
        json=spec(title="Weather station readings (2025 edition)", plans=new_plans,
                  usage_policy={**spec()["usage_policy"], "allowed_purposes": ["research"]}),
        headers=tokens.provider_a,
    )
    assert edited.status_code == 200 and edited.json()["version"] == 2
    published = await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    assert published.json()["latest_version"] == 2

    again = (await catalog.client.get(f"/internal/v1/products/{pid}/versions/1", headers=tokens.service)).json()
    # Like `status`, `latest_version` is the product's current state, not part of the frozen version.
    assert (pinned.pop("latest_version"), again.pop("latest_version")) == (1, 2)
    assert again == pinned
    assert again["plans"][0]["price"] == 4900
    assert again["usage_policy"]["allowed_purposes"] == ["research", "commercial"]
    v2 = (await catalog.client.get(f"/internal/v1/products/{pid}/versions/2", headers=tokens.service)).json()
    assert v2["title"] == "Weather station readings (2025 edition)"
    assert v2["plans"][0]["id"] == v1_plan_id and v2["plans"][0]["price"] == 5900
    public_v1 = (await catalog.client.get(f"/v1/products/{pid}/versions/1", headers=tokens.buyer)).json()
    assert public_v1["title"] == "Weather station readings"
    versions = (await catalog.client.get(f"/v1/products/{pid}/versions", headers=tokens.buyer)).json()
    assert [v["version"] for v in versions["items"]] == [1, 2] and versions["next_cursor"] is None
    # The list envelope pages like every other list.
    first = (await catalog.client.get(f"/v1/products/{pid}/versions", params={"limit": 1},
                                      headers=tokens.buyer)).json()
    rest = (await catalog.client.get(f"/v1/products/{pid}/versions", headers=tokens.buyer,
                                     params={"limit": 1, "cursor": first["next_cursor"]})).json()
    assert [v["version"] for v in first["items"] + rest["items"]] == [1, 2] and rest["next_cursor"] is None


async def test_internal_version_has_the_contract_shape(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create(catalog, tokens.provider_a, l3_spec()))["id"]
    await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    await catalog.client.post(f"/v1/products/{pid}/approve", json={"note": "ok, checked"}, headers=tokens.regulator)
    body = (await catalog.client.get(f"/internal/v1/products/{pid}/versions/1", headers=tokens.service)).json()
    assert set(body) == {"product_id", "version", "status", "provider_org", "slug", "title", "grade",
                         "personal_data", "delivery", "usage_policy", "guardrails", "plans", "latest_version"}
    assert body["product_id"] == pid and body["version"] == 1 and body["status"] == "listed"
    assert body["provider_org"] == ORG_A and body["grade"] == "L3_sensitive"
    assert body["delivery"] == {"data_service_url": "https://data.provider-a.example", "mode": "aggregates"}
    assert body["guardrails"] == {"max_rows": 1000, "min_group_size": 10, "epsilon_budget": 1.0}
    assert body["usage_policy"] == {"allowed_purposes": ["research", "commercial"], "max_duration_days": 365,
                                    "resale_allowed": False, "territories": ["EU"]}
    assert set(body["plans"][0]) == {"id", "name", "kind", "currency", "price", "period", "price_per_query",
                                     "included_queries", "tiers", "query_quota", "access_days", "trial_days",
                                     "trial_queries", "epsilon", "query_epsilon"}
    summary = (await catalog.client.get(f"/internal/v1/products/{pid}", headers=tokens.service)).json()
    assert summary == {"product_id": pid, "status": "listed", "provider_org": ORG_A, "latest_version": 1}


async def test_internal_api_reports_the_current_status_of_a_pinned_version(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    await catalog.client.post(f"/v1/products/{pid}/suspend", json={"reason": "investigation"}, headers=tokens.regulator)
    body = (await catalog.client.get(f"/internal/v1/products/{pid}/versions/1", headers=tokens.service)).json()
    assert body["status"] == "suspended"


async def test_internal_api_is_for_services_only(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    for headers in (tokens.provider_a, tokens.buyer, tokens.regulator, tokens.operator):
        resp = await catalog.client.get(f"/internal/v1/products/{pid}/versions/1", headers=headers)
        assert resp.status_code == 403


async def test_unknown_versions_and_products_are_404(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    v9 = await catalog.client.get(f"/internal/v1/products/{pid}/versions/9", headers=tokens.service)
    assert v9.status_code == 404 and v9.json()["type"].endswith("/version-not-found")
    unpublished = (await create(catalog, tokens.provider_a, spec(slug="unpublished")))["id"]
    assert (await catalog.client.get(f"/internal/v1/products/{unpublished}/versions/1",
                                     headers=tokens.service)).status_code == 404
    gone = await catalog.client.get("/internal/v1/products/prd_nope", headers=tokens.service)
    assert gone.status_code == 404


async def test_editing_a_listed_l1_product_into_l3_keeps_version_1_listed_during_review(
    catalog: RunningApp, tokens: Tokens
) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    await catalog.client.put(f"/v1/products/{pid}", json=l3_spec(slug="weather-stations"), headers=tokens.provider_a)
    resp = await catalog.client.post(f"/v1/products/{pid}/submit", headers=tokens.provider_a)
    assert resp.json()["status"] == "listed" and resp.json()["version_state"] == "in_review"
    seen = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).json()
    assert (seen["grade"], seen["latest_version"]) == ("L1_public", 1)
    await catalog.client.post(f"/v1/products/{pid}/approve", json={"note": "fine now"}, headers=tokens.regulator)
    seen = (await catalog.client.get(f"/v1/products/{pid}", headers=tokens.buyer)).json()
    assert (seen["grade"], seen["latest_version"]) == ("L3_sensitive", 2)


async def test_slug_is_fixed_once_published(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    resp = await catalog.client.put(f"/v1/products/{pid}", json=spec(slug="renamed"), headers=tokens.provider_a)
    assert resp.status_code == 422 and resp.json()["rule"] == "slug-immutable-after-publication"
