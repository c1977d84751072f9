"""L3 answers: differentially private aggregates only, their groups, accuracy and charge."""

from __future__ import annotations

import opendp.prelude as dp

from services.dataservice.runtime import DataServiceState
from tests.dataservice.conftest import HEALTH, SMALL_BUDGET, TRANSIT, TokenFactory, bearer, query
from tests.support import RunningApp

BY_DISTRICT = {"select": ["district"], "aggregates": [{"fn": "count", "as": "visits"}],
               "group_by": ["district"], "order_by": [{"column": "district"}]}
DISTRICTS = 9  # declared in the mapping, Harbour Isle (4 people) included
UNLIMITED = {"epsilon_budget": None}


async def test_row_query_on_an_l3_product_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), {"select": ["district", "cost_eur"], "limit": 5})
    assert resp.status_code == 422
    assert resp.json()["rule"] == "aggregates-only"


async def test_person_column_cannot_be_selected_grouped_filtered_or_counted(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token()
    for body in (
        {"select": ["person_id"], "aggregates": [{"fn": "count"}], "group_by": ["person_id"]},
        {"aggregates": [{"fn": "count"}], "where": [{"column": "person_id", "op": "eq", "value": "p1"}]},
        {"aggregates": [{"fn": "count_distinct", "column": "person_id"}]},
    ):
        resp = await query(ds, token, body)
        assert resp.status_code == 422, body
        assert "person_id" in resp.json()["detail"]


async def test_min_and_max_are_refused_on_l3(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), {"aggregates": [{"fn": "max", "column": "cost_eur"}]})
    assert resp.status_code == 422 and resp.json()["rule"] == "no-min-max"


async def test_every_declared_group_is_shown_or_withheld_by_its_noisy_count(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    # Harbour Isle's 4 people fill 3 of the 10 age bands; the other 7 are empty, yet every
    # band is a public key: each is answered with a noisy count, and withheld only when
    # that noisy count is below k.
    resp = await query(ds, data_token(limits=UNLIMITED), {
        "select": ["age_band"], "aggregates": [{"fn": "count"}], "group_by": ["age_band"],
        "where": [{"column": "district", "op": "eq", "value": "Harbour Isle"}], "epsilon": 1.0})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["rows"]) + body["suppressed_groups"] == 10
    assert all(count >= 10 for _, count in body["rows"])
    assert body["privacy"]["groups"] == "public" and body["privacy"]["min_group_size"] == 10


async def test_empty_groups_are_released_with_noise_when_no_count_is_asked(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(limits=UNLIMITED), {
        "select": ["age_band"], "aggregates": [{"fn": "sum", "column": "wait_days"}],
        "group_by": ["age_band"], "where": [{"column": "district", "op": "eq", "value": "Harbour Isle"}],
        "epsilon": 1.0})
    body = resp.json()
    assert [r[0] for r in body["rows"]] == ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59",
                                            "60-69", "70-79", "80-89", "90+"]
    assert body["suppressed_groups"] == 0


async def test_filters_on_a_grouped_column_narrow_the_declared_groups(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(limits=UNLIMITED), {
        **BY_DISTRICT, "where": [{"column": "district", "op": "in", "value": ["Westend", "Altstadt"]}],
        "epsilon": 1.0})
    assert [r[0] for r in resp.json()["rows"]] == ["Altstadt", "Westend"]


async def test_groups_without_declared_values_are_chosen_by_a_noisy_threshold(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(limits=UNLIMITED), {
        "select": ["year"], "aggregates": [{"fn": "count"}], "group_by": ["year"], "epsilon": 1.0})
    body = resp.json()
    privacy = body["privacy"]
    assert privacy["groups"] == "noisy-threshold" and privacy["threshold"] > 10
    assert 0 < privacy["delta_charged"] <= 1e-9
    assert all(count >= privacy["threshold"] for _, count in body["rows"])
    assert privacy["product_budget"]["delta_spent"] == privacy["delta_charged"]


async def test_a_product_without_a_delta_budget_answers_declared_groups_only(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(SMALL_BUDGET), {
        "select": ["year"], "aggregates": [{"fn": "count"}], "group_by": ["year"]})
    assert resp.status_code == 422 and resp.json()["rule"] == "public-keys-required"
    assert "year" in resp.json()["detail"]


async def test_each_answer_carries_its_accuracy_from_opendp(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(limits=UNLIMITED), {
        **BY_DISTRICT, "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "cost_eur", "as": "avg_cost"}],
        "epsilon": 0.5})
    body = resp.json()
    count, mean = body["accuracy"]
    # count and avg share the row count (cost_eur is NOT NULL): two statistics, ε/2 each.
    assert count["statistic"] == "count" and count["scale"] == 6 / 0.25
    assert count["ci95_half_width"] == dp.discrete_laplacian_scale_to_accuracy(count["scale"], 0.05)
    assert mean["statistic"] == "mean(cost_eur)" and mean["ci95_half_width"] is None
    assert len(mean["ci95_intervals"]) == len(body["rows"])
    assert all(0 <= lo <= hi <= 5000 for lo, hi in mean["ci95_intervals"])
    assert body["privacy"]["epsilon_charged"] == 0.5 and body["noise"]["epsilon"] == 0.5


async def test_the_charge_is_opendps_privacy_map_and_never_more_than_asked(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(limits=UNLIMITED), {
        **BY_DISTRICT, "aggregates": [{"fn": "count"}, {"fn": "sum", "column": "cost_eur"},
                                      {"fn": "count_distinct", "column": "service"}],
        "epsilon": 0.3})
    body = resp.json()
    per_stat = [a["epsilon"] for a in body["accuracy"]]  # each rounded to 1e-6
    assert body["privacy"]["epsilon_charged"] == 0.3
    assert abs(sum(per_stat) - 0.3) <= 3e-6


async def test_the_same_query_gets_fresh_noise_every_time(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(limits=UNLIMITED)
    body = {**BY_DISTRICT, "aggregates": [{"fn": "sum", "column": "cost_eur"}], "epsilon": 0.5}
    first = (await query(ds, token, body)).json()["rows"]
    second = (await query(ds, token, body)).json()["rows"]
    # Nine sums with noise of scale 60 000: the chance two answers agree is below 1e-40.
    assert [r[0] for r in first] == [r[0] for r in second]
    assert [r[1] for r in first] != [r[1] for r in second]


async def test_omitted_epsilon_is_the_plans_default(ds: RunningApp, data_token: TokenFactory) -> None:
    plan_default = await query(ds, data_token(limits={"query_epsilon": 0.2}), BY_DISTRICT)
    assert plan_default.json()["privacy"]["epsilon_charged"] == 0.2
    mapping_default = await query(ds, data_token(ent="ent_other"), BY_DISTRICT)
    assert mapping_default.json()["privacy"]["epsilon_charged"] == 0.1


async def test_an_epsilon_below_the_minimum_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), {**BY_DISTRICT, "epsilon": 0.001})
    assert resp.status_code == 422
    assert resp.json()["rule"] == "epsilon-minimum" and resp.json()["min_epsilon"] == 0.01


async def test_spending_the_entitlements_share_is_a_403_that_says_so(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_share", limits={"epsilon_budget": 0.5})
    body = {**BY_DISTRICT, "epsilon": 0.2}
    assert [(await query(ds, token, body)).json()["epsilon_remaining"] for _ in range(2)] == [0.3, 0.1]
    third = await query(ds, token, body)
    assert third.status_code == 403
    problem = third.json()
    assert problem["type"].endswith("/privacy-budget-exhausted") and problem["budget"] == "entitlement"
    assert problem["epsilon_remaining"] == 0.1 and problem["renews_at"] is None


async def test_the_product_budget_is_shared_by_every_buyer_and_says_when_it_renews(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    first = data_token(SMALL_BUDGET, ent="ent_a", org="org_a")
    second = data_token(SMALL_BUDGET, ent="ent_b", org="org_b")
    body = {**BY_DISTRICT, "epsilon": 0.4}
    assert (await query(ds, first, body)).status_code == 200
    assert (await query(ds, first, body)).status_code == 200
    refused = await query(ds, second, body)  # 0.2 left of the product's 1.0 this quarter
    assert refused.status_code == 429, refused.text
    problem = refused.json()
    assert problem["budget"] == "product" and problem["epsilon_remaining"] == 0.2
    assert problem["renews_at"].endswith("-01T00:00:00Z") and int(refused.headers["Retry-After"]) > 0
    assert (await query(ds, second, {**body, "epsilon": 0.2})).status_code == 200


async def test_noisy_sum_needs_declared_bounds(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), {"aggregates": [{"fn": "sum", "column": "year"}]})
    assert resp.status_code == 422 and resp.json()["rule"] == "noise-bounds"


async def test_epsilon_on_an_l1_product_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {"aggregates": [{"fn": "count"}], "epsilon": 0.1})
    assert resp.status_code == 422 and resp.json()["rule"] == "noise-l3-only"


async def test_token_k_larger_than_the_mapping_k_wins(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(limits={"min_group_size": 1_000_000}), BY_DISTRICT)
    assert resp.json()["rows"] == [] and resp.json()["suppressed_groups"] == DISTRICTS


async def test_schema_shows_the_privacy_terms_and_the_budget_left(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(limits=UNLIMITED)
    await query(ds, token, {**BY_DISTRICT, "epsilon": 0.5})
    schema = (await ds.client.get("/v1/schema", headers=bearer(token))).json()
    assert schema["product_id"] == HEALTH
    terms = schema["privacy"]
    assert terms["max_rows_per_person"] == 6 and terms["default_query_epsilon"] == 0.1
    assert terms["product_budget"]["epsilon_total"] == 100 and terms["product_budget"]["epsilon_spent"] == 0.5
    cols = {c["name"]: c for c in schema["columns"]}
    assert cols["district"]["values"][-1] == "Harbour Isle" and cols["cost_eur"]["bounds"] == [0, 5000]


async def test_a_query_the_budget_cannot_pay_is_refused_before_any_data_is_read(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_broke", limits={"epsilon_budget": 0.1})
    cache = ds.state(DataServiceState).query_service.cache
    assert (await query(ds, token, {**BY_DISTRICT, "epsilon": 0.1})).status_code == 200
    read = cache.misses
    refused = await query(ds, token, {"select": ["sex"], "group_by": ["sex"],
                                      "aggregates": [{"fn": "count"}], "epsilon": 0.1})
    assert refused.status_code == 403 and refused.json()["budget"] == "entitlement"
    assert cache.misses == read  # the new query's aggregates were never computed
