"""Every product rule refuses with a 422 problem that names the rule and says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from tests.catalog.conftest import L3_OVERRIDES, Tokens, create, create_listed, l3_spec, spec
from tests.support import RunningApp

ATTESTATION = L3_OVERRIDES["deidentification"]
PLAN = {"name": "Monthly", "kind": "subscription", "currency": "EUR", "price": 4900, "period": "month"}

REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("identifiable-personal-data-not-listable",
     spec(personal_data="identifiable", grade="L3_sensitive", delivery={
         "data_service_url": "https://d.example", "mode": "aggregates"}),
     "identifiable personal data cannot be listed"),
    ("l4-restricted-not-listable", spec(grade="L4_restricted"), "L4_restricted data"),
    ("deidentified-requires-l3", spec(personal_data="deidentified", deidentification=ATTESTATION,
                                      grade="L2_internal"), "at least L3_sensitive, not L2_internal"),
    ("deidentified-requires-attestation", l3_spec(deidentification=None), "needs a de-identification attestation"),
    ("attestation-only-for-deidentified", spec(deidentification=ATTESTATION), "only applies to personal_data"),
    ("attestation-date-not-in-future", l3_spec(deidentification={**ATTESTATION, "date": "2999-01-01"}),
     "dated in the future"),
    ("personal-fields-need-declaration",
     spec(schema={"fields": [{"name": "email", "type": "string", "personal": True}]}, sample=None),
     "flags personal fields (email)"),
    ("l3-aggregates-only", l3_spec(delivery={"data_service_url": "https://d.example", "mode": "rows"}),
     "aggregates only"),
    ("l3-no-sample", l3_spec(sample=[{"district": "North", "trips": 12}]), "cannot publish sample rows"),
    ("min-group-size-at-least-k",
     l3_spec(delivery={"data_service_url": "https://d.example", "mode": "aggregates", "min_group_size": 3}),
     "below the attestation's k (10)"),
    ("epsilon-budget-l3-only",
     spec(delivery={"data_service_url": "https://d.example", "mode": "rows", "epsilon_budget": 0.5}),
     "L3_sensitive products only"),
    ("data-service-url-absolute", spec(delivery={"data_service_url": "/relative/path", "mode": "rows"}),
     "absolute http(s) URL"),
    ("data-service-url-absolute", spec(delivery={"data_service_url": "ftp://files.example", "mode": "rows"}),
     "absolute http(s) URL"),
    ("sample-matches-schema", spec(sample=[{"station": "AB1", "temp_c": "warm"}]),
     "field 'temp_c' should be of type number"),
    ("sample-matches-schema", spec(sample=[{"station": "AB1", "humidity": 3}]),
     "not in the schema: humidity"),
    ("schema-field-names-unique",
     spec(schema={"fields": [{"name": "a", "type": "string"}, {"name": "a", "type": "integer"}]}, sample=None),
     "repeated: a"),
    ("price-integer-minor-units", spec(plans=[{**PLAN, "price": 49.99}]),
     "integer number of minor units"),
    ("price-non-negative", spec(plans=[{**PLAN, "price": -1}]), "cannot be negative"),
    ("currency-iso-4217", spec(plans=[{**PLAN, "currency": "EURO"}]), "not an ISO 4217 currency code"),
    ("currency-iso-4217", spec(plans=[{**PLAN, "currency": "XYZ"}]), "not an ISO 4217 currency code"),
    ("plans-single-currency", spec(plans=[PLAN, {**PLAN, "name": "Dollar", "currency": "USD"}]),
     "one currency"),
    ("plan-shape", spec(plans=[{**PLAN, "period": None}]), "give period 'month' or 'year'"),
    ("plan-shape", spec(plans=[{"name": "Free", "kind": "free", "currency": "EUR", "price": 100,
                                "access_days": 30}]), "a free plan has price 0"),
    ("plan-shape", spec(plans=[{"name": "Metered", "kind": "metered", "currency": "EUR", "period": "month",
                                "tiers": [{"up_to": None, "unit_price": 3}, {"up_to": 100, "unit_price": 5}]}]),
     "only the last tier may be open-ended"),
    ("plan-shape", spec(plans=[{"name": "Once", "kind": "one_time", "currency": "EUR", "price": 900}]),
     "give access_days"),
    ("plan-shape", spec(plans=[{"name": "Free", "kind": "free", "currency": "EUR", "access_days": 30,
                                "trial_days": 7}]), "a free plan needs no trial"),
]


@pytest.mark.parametrize(("rule", "body", "message"), REFUSALS, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSALS)])
async def test_rule_refusal_names_the_rule(
    catalog: RunningApp, tokens: Tokens, rule: str, body: dict[str, Any], message: str
) -> None:
    resp = await catalog.client.post("/v1/products", json=body, headers=tokens.provider_a)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["rule"] == rule
    assert problem["type"].endswith("/rule-violation")
    assert message in problem["detail"]


async def test_derived_product_grade_is_at_least_its_sources(catalog: RunningApp, tokens: Tokens) -> None:
    source = await create(catalog, tokens.provider_a, l3_spec())
    await catalog.client.post(f"/v1/products/{source['id']}/submit", headers=tokens.provider_a)
    await catalog.client.post(f"/v1/products/{source['id']}/approve", json={"note": "fine"},
                              headers=tokens.regulator)
    derived = spec(slug="derived", derived_from=[source["id"]])
    resp = await catalog.client.post("/v1/products", json=derived, headers=tokens.provider_b)
    assert resp.status_code == 422
    assert resp.json()["rule"] == "derived-grade-at-least-sources"
    assert resp.json()["minimum_grade"] == "L3_sensitive"
    ok = await catalog.client.post("/v1/products", json=l3_spec(slug="derived", derived_from=[source["id"]]),
                                   headers=tokens.provider_b)
    assert ok.status_code == 201, ok.text


async def test_derived_from_an_invisible_draft_is_refused_like_a_missing_product(
    catalog: RunningApp, tokens: Tokens
) -> None:
    hidden = await create(catalog, tokens.provider_a, spec())
    resp = await catalog.client.post("/v1/products", json=spec(derived_from=[hidden["id"], "prd_00000000"]),
                                     headers=tokens.provider_b)
    assert resp.status_code == 422
    assert resp.json()["rule"] == "derived-from-known-products"
    assert resp.json()["products"] == [hidden["id"], "prd_00000000"]


async def test_rules_are_checked_again_when_editing(catalog: RunningApp, tokens: Tokens) -> None:
    pid = (await create_listed(catalog, tokens.provider_a, spec()))["id"]
    resp = await catalog.client.put(f"/v1/products/{pid}", json=spec(grade="L4_restricted"),
                                    headers=tokens.provider_a)
    assert resp.status_code == 422 and resp.json()["rule"] == "l4-restricted-not-listable"


async def test_valid_plan_kinds_are_accepted_in_the_contract_shape(catalog: RunningApp, tokens: Tokens) -> None:
    plans = [
        {"name": "Free taster", "kind": "free", "currency": "EUR", "access_days": 7, "query_quota": 50},
        {"name": "One-off", "kind": "one_time", "currency": "EUR", "price": 19900, "access_days": 90},
        {"name": "Yearly", "kind": "subscription", "currency": "EUR", "price": 49000, "period": "year",
         "trial_days": 14, "trial_queries": 100},
        {"name": "Metered", "kind": "metered", "currency": "EUR", "price": 1000, "period": "month",
         "included_queries": 1000, "tiers": [{"up_to": 10000, "unit_price": 5}, {"up_to": None, "unit_price": 3}],
         "query_quota": 100000},
    ]
    product = await create(catalog, tokens.provider_a, spec(plans=plans))
    got = product["plans"]
    assert [p["kind"] for p in got] == ["free", "one_time", "subscription", "metered"]
    assert all(p["id"].startswith("plan_") for p in got)
    assert got[3] == {"id": got[3]["id"], "name": "Metered", "kind": "metered", "currency": "EUR", "price": 1000,
                      "period": "month", "price_per_query": 0, "included_queries": 1000,
                      "tiers": [{"up_to": 10000, "unit_price": 5}, {"up_to": None, "unit_price": 3}],
                      "query_quota": 100000, "access_days": None, "trial_days": None, "trial_queries": None,
                      "epsilon": None, "query_epsilon": None}
    assert (got[2]["trial_days"], got[2]["trial_queries"]) == (14, 100)


async def test_missing_rights_are_a_field_level_validation_problem(catalog: RunningApp, tokens: Tokens) -> None:
    body = spec()
    del body["rights"]["operating_right_holder"]
    resp = await catalog.client.post("/v1/products", json=body, headers=tokens.provider_a)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "rights.operating_right_holder"
