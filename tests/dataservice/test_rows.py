"""L1/L2 products: row queries, caps, masking, validation and the schema endpoint."""

from __future__ import annotations

from tests.dataservice.conftest import FLEET, HEALTH, TRANSIT, TokenFactory, bearer, query
from tests.support import RunningApp


async def test_row_query_returns_the_selected_columns(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {
        "select": ["year", "month", "trips"],
        "where": [{"column": "district", "op": "eq", "value": "Altstadt"},
                  {"column": "mode", "op": "eq", "value": "tram"},
                  {"column": "year", "op": "eq", "value": 2024}],
        "order_by": [{"column": "month", "dir": "desc"}], "limit": 100})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["columns"] == ["year", "month", "trips"]
    assert [r[1] for r in body["rows"]] == list(range(12, 0, -1))
    assert body["truncated"] is False and body["noise"] is None


async def test_row_query_is_capped_by_the_token_max_rows(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT, limits={"max_rows": 7}), {"select": ["trips"], "limit": 500})
    body = resp.json()
    assert len(body["rows"]) == 7 and body["truncated"] is True


async def test_row_query_is_capped_by_the_mapping_max_rows(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {"select": ["trips"], "limit": 100_000})
    assert len(resp.json()["rows"]) == 50  # the test mapping's max_rows


async def test_masked_column_is_never_returned_in_clear(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(FLEET), {"limit": 20})
    body = resp.json()
    assert resp.status_code == 200, resp.text
    idx = body["columns"].index("operator_contact")
    assert {r[idx] for r in body["rows"]} == {"***"}
    assert "@" not in resp.text


async def test_masked_column_cannot_be_filtered_grouped_or_ordered(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(FLEET)
    for body in (
        {"where": [{"column": "operator_contact", "op": "gt", "value": "d"}]},
        {"aggregates": [{"fn": "count"}], "group_by": ["operator_contact"]},
        {"order_by": [{"column": "operator_contact"}]},
        {"aggregates": [{"fn": "min", "column": "operator_contact"}]},
    ):
        resp = await query(ds, token, body)
        assert resp.status_code == 422, body
        assert "masked" in resp.json()["detail"]


async def test_unknown_column_and_operator_are_named_in_the_problem(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    resp = await query(ds, data_token(TRANSIT), {
        "select": ["districtt"], "where": [{"column": "year", "op": "like", "value": 2024}]})
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["type"].endswith("/invalid-query")
    assert "'districtt'" in problem["detail"] and "'like'" in problem["detail"]
    assert {e["field"] for e in problem["errors"]} == {"select[0]", "where[0].op"}


async def test_unknown_function_is_named(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {"aggregates": [{"fn": "median", "column": "trips"}]})
    assert resp.status_code == 422 and "'median'" in resp.json()["detail"]


async def test_value_of_the_wrong_type_is_a_422_not_a_database_error(
    ds: RunningApp, data_token: TokenFactory
) -> None:
    token = data_token(TRANSIT)
    for flt in ({"column": "year", "op": "eq", "value": "twenty"},
                {"column": "year", "op": "between", "value": [2022]},
                {"column": "year", "op": "in", "value": 2022},
                {"column": "year", "op": "eq", "value": None},
                {"column": "district", "op": "eq", "value": {"$ne": 1}}):
        resp = await query(ds, token, {"where": [flt]})
        assert resp.status_code == 422, flt
        assert resp.json()["errors"][0]["field"] == "where[0].value"


async def test_aggregates_on_l1_are_not_suppressed(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {
        "select": ["district"], "aggregates": [{"fn": "sum", "column": "trips", "as": "trips"},
                                               {"fn": "max", "column": "avg_delay_min"}],
        "group_by": ["district"], "order_by": [{"column": "trips", "dir": "desc"}]})
    body = resp.json()
    assert resp.status_code == 200, resp.text
    assert body["columns"] == ["district", "trips", "max_avg_delay_min"]
    assert len(body["rows"]) == 9 and body["suppressed_groups"] == 0
    totals = [r[1] for r in body["rows"]]
    assert totals == sorted(totals, reverse=True)


async def test_select_outside_group_by_is_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {"select": ["mode"], "aggregates": [{"fn": "count"}],
                                                 "group_by": ["district"]})
    assert resp.status_code == 422 and "group_by" in resp.json()["detail"]


async def test_unknown_request_fields_are_refused(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await query(ds, data_token(TRANSIT), {"sql": "SELECT * FROM transit_stats"})
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")


async def test_schema_shows_what_the_token_product_exposes(ds: RunningApp, data_token: TokenFactory) -> None:
    resp = await ds.client.get("/v1/schema", headers=bearer(data_token(FLEET, limits={"max_rows": 20})))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["product_id"] == FLEET and body["grade"] == "L2_internal" and body["mode"] == "rows"
    cols = {c["name"]: c for c in body["columns"]}
    assert cols["operator_contact"]["masked"] and not cols["operator_contact"]["filterable"]
    assert cols["trips"]["type"] == "integer" and cols["district"]["type"] == "string"  # catalog names
    assert body["max_rows"] == 20 and body["min_group_size"] is None


async def test_schema_of_an_l3_product_hides_the_person_column(ds: RunningApp, data_token: TokenFactory) -> None:
    body = (await ds.client.get("/v1/schema", headers=bearer(data_token(HEALTH)))).json()
    assert body["mode"] == "aggregates" and body["min_group_size"] == 10
    assert "person_id" not in {c["name"] for c in body["columns"]}
    assert "min" not in body["functions"] and body["epsilon_remaining"] == 1.0
    assert body["privacy"]["product_budget"]["epsilon_remaining"] == 100
