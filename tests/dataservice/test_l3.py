"""L3 guardrails: aggregates only, minimum group size, differencing, noise and budget."""

from __future__ import annotations

from tests.dataservice.conftest import TokenFactory, query
from tests.support import RunningApp

BY_DISTRICT = {"select": ["district"], "aggregates": [{"fn": "count", "as": "visits"}],
               "group_by": ["district"], "order_by": [{"column": "district"}]}


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


async def test_small_groups_are_suppressed_with_a_complementary_group(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(), BY_DISTRICT)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    districts = [r[0] for r in body["rows"]]
    # Harbour Isle has 4 people (< k=10); one more group is withheld so the total
    # minus the shown groups covers at least k people.
    assert "Harbour Isle" not in districts
    assert body["suppressed_groups"] == 2 and len(districts) == 7
    total = (await query(ds, data_token(), {"aggregates": [{"fn": "count"}]})).json()["rows"][0][0]
    hidden_visits = total - sum(r[1] for r in body["rows"])
    assert hidden_visits > 4 * 6  # more than Harbour Isle's at most 24 visits: not just it


async def test_group_by_that_isolates_people_returns_nothing_about_them(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(), {
        "select": ["age_band", "sex"], "aggregates": [{"fn": "avg", "column": "cost_eur"}],
        "where": [{"column": "district", "op": "eq", "value": "Harbour Isle"}],
        "group_by": ["age_band", "sex"]})
    # Either refused as differencing or answered with every group suppressed: no values.
    if resp.status_code == 200:
        assert resp.json()["rows"] == [] and resp.json()["suppressed_groups"] > 0
    else:
        assert resp.status_code == 422
    fine = await query(ds, data_token(), {
        "select": ["district", "age_band", "sex"], "aggregates": [{"fn": "count"}],
        "group_by": ["district", "age_band", "sex"]})
    body = fine.json()
    assert body["suppressed_groups"] > 0
    assert all(r[0] != "Harbour Isle" for r in body["rows"])


async def test_filter_that_leaves_out_fewer_than_k_people_is_refused(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    # 90+ year olds are 3 to 13 people per district: excluding them singles them out.
    resp = await query(ds, data_token(), {
        **BY_DISTRICT, "aggregates": [{"fn": "sum", "column": "cost_eur"}],
        "where": [{"column": "age_band", "op": "ne", "value": "90+"}]})
    assert resp.status_code == 422
    assert resp.json()["rule"] == "differencing"


async def test_filter_that_removes_whole_large_groups_is_answered(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(), {
        **BY_DISTRICT, "where": [{"column": "sex", "op": "eq", "value": "F"}]})
    assert resp.status_code == 200, resp.text


async def test_two_overlapping_aggregates_whose_difference_reveals_people_are_refused(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(ent="ent_differencing")
    first = await query(ds, token, {
        "aggregates": [{"fn": "sum", "column": "cost_eur"}],
        "where": [{"column": "district", "op": "eq", "value": "Altstadt"}]})
    assert first.status_code == 200, first.text
    second = await query(ds, token, {
        "aggregates": [{"fn": "sum", "column": "cost_eur"}],
        "where": [{"column": "district", "op": "eq", "value": "Altstadt"},
                  {"column": "age_band", "op": "in",
                   "value": ["0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89"]}]})
    assert second.status_code == 422
    assert second.json()["rule"] == "differencing"
    assert "earlier query" in second.json()["detail"]


async def test_differencing_history_is_per_entitlement(ds: RunningApp, data_token: TokenFactory) -> None:
    a = {"aggregates": [{"fn": "count"}], "where": [{"column": "sex", "op": "eq", "value": "F"}]}
    b = {"aggregates": [{"fn": "count"}], "where": [{"column": "sex", "op": "eq", "value": "M"}]}
    assert (await query(ds, data_token(ent="ent_one"), a)).status_code == 200
    assert (await query(ds, data_token(ent="ent_two"), b)).status_code == 200


async def test_min_and_max_are_refused_on_l3(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), {"aggregates": [{"fn": "max", "column": "cost_eur"}]})
    assert resp.status_code == 422 and resp.json()["rule"] == "no-min-max"


async def test_noisy_answer_is_charged_to_the_privacy_budget(ds: RunningApp, data_token: TokenFactory) -> None:
    token = data_token(ent="ent_noise", limits={"epsilon_budget": 0.5})
    body = {**BY_DISTRICT, "aggregates": [{"fn": "count"}, {"fn": "avg", "column": "cost_eur"}],
            "epsilon": 0.2}
    first = await query(ds, token, body)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["noise"] == {"mechanism": "laplace", "epsilon": 0.2}
    assert answer["epsilon_remaining"] == 0.3
    assert all(isinstance(r[1], int) and 0 <= r[2] <= 5000 for r in answer["rows"])
    second = await query(ds, token, body)
    assert second.json()["epsilon_remaining"] == 0.1
    third = await query(ds, token, body)
    assert third.status_code == 403
    assert third.json()["type"].endswith("/privacy-budget-exhausted")
    assert third.json()["epsilon_remaining"] == 0.1


async def test_noise_values_differ_from_the_exact_answer(ds: RunningApp, data_token: TokenFactory) -> None:
    exact = (await query(ds, data_token(ent="ent_exact"), BY_DISTRICT)).json()["rows"]
    noisy = (await query(ds, data_token(ent="ent_noisy"), {**BY_DISTRICT, "epsilon": 0.05})).json()["rows"]
    assert [r[0] for r in exact] == [r[0] for r in noisy]
    assert [r[1] for r in exact] != [r[1] for r in noisy]


async def test_noisy_sum_needs_declared_bounds(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(), {"aggregates": [{"fn": "sum", "column": "wait_days"}],
                                          "epsilon": 0.1})
    assert resp.status_code == 422 and resp.json()["rule"] == "noise-bounds"


async def test_token_k_larger_than_the_mapping_k_wins(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(limits={"min_group_size": 1000}), BY_DISTRICT)
    assert resp.json()["rows"] == [] and resp.json()["suppressed_groups"] == 9
