"""ε as a product attribute: plans sell it, and the product shows its privacy budget as the
data service (the source of truth) last reported it."""

from __future__ import annotations

from typing import Any

from tests.catalog.conftest import Tokens, create, l3_spec, spec
from tests.support import RunningApp

L3_PLANS = [{"name": "Research", "kind": "one_time", "currency": "EUR", "price": 4900, "access_days": 30,
             "epsilon": 2.0, "query_epsilon": 0.5}]


def report(**overrides: Any) -> dict[str, Any]:
    return {"period": "2026-11", "renews_at": "2026-12-01T00:00:00Z", "epsilon_total": 10.0,
            "epsilon_spent": 2.5, "delta_total": 1e-6, "delta_spent": 0.0, "answers": 5,
            "as_of": "2026-11-29T10:00:00Z", **overrides}


async def test_l3_plans_carry_the_epsilon_they_sell(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, l3_spec(plans=L3_PLANS))
    [plan] = product["plans"]
    assert (plan["epsilon"], plan["query_epsilon"]) == (2.0, 0.5)


async def test_epsilon_on_a_plan_of_an_l1_product_is_refused(catalog: RunningApp, tokens: Tokens) -> None:
    resp = await catalog.client.post("/v1/products", json=spec(plans=L3_PLANS), headers=tokens.provider_a)
    assert resp.status_code == 422 and resp.json()["rule"] == "epsilon-budget-l3-only"


async def test_a_default_query_epsilon_above_what_the_plan_sells_is_refused(
    catalog: RunningApp, tokens: Tokens
) -> None:
    plans = [{**L3_PLANS[0], "epsilon": 0.2, "query_epsilon": 0.5}]
    resp = await catalog.client.post("/v1/products", json=l3_spec(plans=plans), headers=tokens.provider_a)
    assert resp.status_code == 422 and resp.json()["rule"] == "query-epsilon-within-plan"


async def test_the_data_services_report_shows_on_the_product(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, l3_spec(plans=L3_PLANS))
    assert product["privacy_budget"] is None  # nothing reported yet
    resp = await catalog.client.put(f"/v1/products/{product['id']}/privacy-budget", json=report(),
                                    headers=tokens.provider_a)
    assert resp.status_code == 200, resp.text
    shown = (await catalog.client.get(f"/v1/products/{product['id']}", headers=tokens.provider_a)).json()
    budget = shown["privacy_budget"]
    assert (budget["epsilon_total"], budget["epsilon_remaining"], budget["period"]) == (10.0, 7.5, "2026-11")
    assert budget["as_of"] == "2026-11-29T10:00:00Z" and budget["source"] == "data service report"


async def test_an_older_report_never_replaces_a_newer_one(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, l3_spec(plans=L3_PLANS))
    url = f"/v1/products/{product['id']}/privacy-budget"
    await catalog.client.put(url, json=report(epsilon_spent=4.0, as_of="2026-11-29T11:00:00Z"),
                             headers=tokens.service)
    late = await catalog.client.put(url, json=report(epsilon_spent=2.5), headers=tokens.service)
    assert late.json()["epsilon_spent"] == 4.0


async def test_only_the_products_provider_or_a_service_reports(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, l3_spec(plans=L3_PLANS))
    url = f"/v1/products/{product['id']}/privacy-budget"
    assert (await catalog.client.put(url, json=report(), headers=tokens.provider_b)).status_code == 404
    assert (await catalog.client.put(url, json=report(), headers=tokens.buyer)).status_code == 403


async def test_a_product_without_privacy_budget_refuses_reports(catalog: RunningApp, tokens: Tokens) -> None:
    product = await create(catalog, tokens.provider_a, spec())
    resp = await catalog.client.put(f"/v1/products/{product['id']}/privacy-budget", json=report(),
                                    headers=tokens.provider_a)
    assert resp.status_code == 422 and resp.json()["rule"] == "privacy-budget-l3-only"


async def test_buyers_see_the_newest_report_on_a_listed_product(catalog: RunningApp, tokens: Tokens) -> None:
    """Buyers read published products from the stored public document; the budget is product
    state, so a report after publication must reach them too (not stay null as published)."""
    product = await create(catalog, tokens.provider_a, l3_spec(plans=L3_PLANS))
    url = f"/v1/products/{product['id']}"
    assert (await catalog.client.post(f"{url}/submit", headers=tokens.provider_a)).status_code == 200
    approved = await catalog.client.post(f"{url}/approve", json={"note": "Attestation verified."},
                                         headers=tokens.regulator)
    assert approved.status_code == 200, approved.text
    assert (await catalog.client.get(url, headers=tokens.buyer)).json()["privacy_budget"] is None
    for spent, as_of in ((2.5, "2026-11-29T10:00:00Z"), (4.0, "2026-11-29T11:00:00Z")):
        resp = await catalog.client.put(f"{url}/privacy-budget", json=report(epsilon_spent=spent, as_of=as_of),
                                        headers=tokens.service)
        assert resp.status_code == 200, resp.text
        seen = (await catalog.client.get(url, headers=tokens.buyer)).json()
        assert seen["privacy_budget"]["epsilon_spent"] == spent
