"""The demo's story (`make demo`) as assertions, on real processes: a provider lists
an open and a sensitive product, a regulator approves the sensitive one, a buyer
orders and pays through localstripe, receives exactly one entitlement and a data
token, queries aggregates only, and the regulator traces and verifies it all."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.client import ApiError
from sluice.demo import bind_products, product_specs
from tests.e2e.market import (
    AGGREGATE_QUERY,
    ENTITLEMENT_ACTIONS,
    ORDER_ACTIONS,
    QUERY_ACTIONS,
    Market,
    assert_each_once,
    settled_log,
    wait_until,
)


@pytest.fixture(scope="module")
def purchase(market: Market) -> dict[str, Any]:
    """The buyer orders the L3 product for research, pays by card and gets a data token."""
    order = market.place_health_order("research")
    assert order["status"] == "pending_payment"
    paid = market.buyer.pay_order(order["id"], "pm_card_visa")
    assert paid["status"] in ("paid", "fulfilled")
    fulfilled = market.wait_for_status(order["id"], "fulfilled")
    [ent] = market.buyer.list_entitlements(order_id=order["id"])
    token = market.buyer.issue_data_token(ent["id"])
    return {"order": fulfilled, "entitlement": ent, "token": token["access_token"]}


def query(market: Market, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{market.data_url}/v1/query", json=body,
                      headers={"Authorization": f"Bearer {token}"}, timeout=20)


def test_l1_lists_itself_and_l3_waits_for_the_regulator(market: Market) -> None:
    assert market.transit["status"] == "listed"  # L1: self-service on submit
    assert (market.health["status"], market.health["version"]) == ("listed", 1)  # L3: approved
    # Another L3 product waits in the regulator's queue and is invisible to buyers meanwhile.
    _, spec = product_specs(market.data_url, uuid.uuid4().hex[:6])
    draft = market.provider.create_product(spec)
    assert market.provider.submit_product(draft["id"])["status"] == "in_review"
    queue = market.regulator.review_queue()
    assert draft["id"] in [p["product_id"] for p in queue["items"]]
    found = [p["id"] for p in market.buyer.search_products("health visits")["items"]]
    assert market.health["id"] in found and draft["id"] not in found


def test_quote_prices_in_minor_units_with_the_platform_fee(market: Market) -> None:
    plan = market.health["plans"][0]
    quote = market.buyer.quote(market.health["id"], market.health["version"], plan["id"])
    price = quote["price"]
    assert (price["currency"], price["total"]) == ("EUR", 4900)
    assert price["platform_fee"] == 490 and price["provider_share"] == 4410


def test_a_purpose_outside_the_usage_policy_is_refused(market: Market) -> None:
    with pytest.raises(ApiError) as refused:
        market.place_health_order("marketing")
    assert refused.value.status == 422
    assert "marketing" in str(refused.value.problem.get("detail"))


def test_a_paid_order_is_fulfilled_with_exactly_one_entitlement(market: Market,
                                                              purchase: dict[str, Any]) -> None:
    order, ent = purchase["order"], purchase["entitlement"]
    assert order["entitlement_id"] == ent["id"]
    [held] = market.entitlements_of(order["id"])
    assert held["id"] == ent["id"]
    assert (held["status"], held["purpose"], held["product_id"]) == ("active", "research",
                                                                     market.health["id"])
    assert held["buyer_org"] == market.buyer_org and held["grade"] == "L3_sensitive"
    assert held["audience"] == market.data_url


def _served(market: Market, token: str) -> None:
    """Wait until the data service serves the bound product (it re-reads the aliases within
    ~2 s); asking for the schema spends no privacy budget."""
    def schema() -> bool:
        return httpx.get(f"{market.data_url}/v1/schema", headers={"Authorization": f"Bearer {token}"},
                         timeout=20).status_code == 200
    wait_until(schema, "the data service to serve the bound product", timeout=15)


def test_the_buyer_gets_differentially_private_aggregates(market: Market,
                                                          purchase: dict[str, Any]) -> None:
    _served(market, purchase["token"])
    resp = query(market, purchase["token"], AGGREGATE_QUERY)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["columns"] == ["district", "count", "avg_cost"]
    # Every declared district is accounted for: shown with a noisy count of at least k,
    # or withheld because its noisy count is below k (Harbour Isle's 4 people usually are).
    assert len(result["rows"]) + result["suppressed_groups"] == 9
    assert all(row[1] >= 10 for row in result["rows"])
    privacy = result["privacy"]
    assert privacy["groups"] == "public" and privacy["epsilon_charged"] == 0.5  # the demo default
    budget = privacy["product_budget"]
    assert budget["epsilon_total"] == 10 and budget["epsilon_spent"] >= 0.5
    count, mean = result["accuracy"]
    assert count["ci95_half_width"] > 0 and len(mean["ci95_intervals"]) == len(result["rows"])


def test_row_level_queries_on_the_l3_product_are_refused(market: Market,
                                                         purchase: dict[str, Any]) -> None:
    _served(market, purchase["token"])  # the product is served: a refusal is about rows
    resp = query(market, purchase["token"], {"select": ["district", "cost_eur"], "limit": 10})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["rule"] == "aggregates-only"


def test_a_platform_token_is_not_a_data_token(market: Market) -> None:
    resp = query(market, market.buyer.bearer(), AGGREGATE_QUERY)
    assert resp.status_code == 401, resp.text


def test_a_free_l1_order_gives_row_level_access(market: Market) -> None:
    plan = market.transit["plans"][0]
    quote = market.buyer.quote(market.transit["id"], market.transit["version"], plan["id"])
    assert quote["price"]["total"] == 0
    order = market.buyer.create_order(quote["id"], "planning")
    fulfilled = market.wait_for_status(order["id"], "fulfilled")  # no payment needed
    [ent] = market.entitlements_of(order["id"])
    assert fulfilled["entitlement_id"] == ent["id"] and ent["grade"] == "L1_public"
    token = market.buyer.issue_data_token(ent["id"])["access_token"]

    def answered() -> httpx.Response | None:
        resp = query(market, token, {"select": ["district", "year", "month", "trips"],
                                     "where": [{"column": "year", "op": "eq", "value": 2024}],
                                     "limit": 5})
        return resp if resp.status_code == 200 else None
    rows = wait_until(answered, "a row-level answer", timeout=15).json()
    assert rows["columns"] == ["district", "year", "month", "trips"]
    assert 0 < len(rows["rows"]) <= 5 and all(r[1] == 2024 for r in rows["rows"])


def test_the_regulator_traces_each_step_exactly_once_and_verifies_the_log(
        market: Market, purchase: dict[str, Any], tmp_path: Path) -> None:
    order_id, ent_id = purchase["order"]["id"], purchase["entitlement"]["id"]
    # At least one query ran on this entitlement (the test above, or this one).
    assert query(market, purchase["token"], AGGREGATE_QUERY).status_code == 200
    expected = {order_id: ORDER_ACTIONS, ent_id: (*ENTITLEMENT_ACTIONS, "access.data_token.issued")}
    market.wait_for_trail({order_id: ORDER_ACTIONS, ent_id: (*ENTITLEMENT_ACTIONS, *QUERY_ACTIONS)})
    log = settled_log(market)  # every outbox's events, each once
    assert_each_once(log, expected)
    paid = next(e for e in log if e["action"] == "orders.order.paid" and e["subject"]["id"] == order_id)
    # The buyer's pay request confirmed at Stripe; localstripe's webhook follows a second later
    # (a slow machine may let it win). Either way the regulator sees which one paid.
    assert paid["details"]["by"] in ("stripe-confirm", "stripe-webhook")
    assert market.verify_log(tmp_path / "checkpoint.txt") == 0
    # A second run checks consistency with the checkpoint saved by the first.
    assert market.verify_log(tmp_path / "checkpoint.txt") == 0


def test_a_product_suspended_in_the_catalog_stops_its_buyers_at_access_and_the_data_service(
        market: Market) -> None:
    """The regulator suspends a listed product in the catalog. The catalog tells access through
    its outbox; access suspends the product's entitlements (no new data tokens) and lists them
    in its revocation feed, so the data service refuses a token it accepted a moment before."""
    spec, _ = product_specs(market.data_url, uuid.uuid4().hex[:6])  # a fresh L1 product of its own
    product = market.provider.submit_product(market.provider.create_product(spec)["id"])
    bind_products(market.cluster.aliases_file, product["id"], market.health["id"])
    quote = market.buyer.quote(product["id"], product["version"], product["plans"][0]["id"])
    order = market.wait_for_status(market.buyer.create_order(quote["id"], "planning")["id"], "fulfilled")
    token = market.buyer.issue_data_token(order["entitlement_id"])["access_token"]
    rows = {"select": ["district", "trips"], "limit": 1}
    wait_until(lambda: query(market, token, rows).status_code == 200, "the control: the token answers", 15)

    market.regulator.request("POST", f"{market.endpoints.catalog}/v1/products/{product['id']}/suspend",
                             json={"reason": "provider under investigation"})
    ent = wait_until(lambda: (e := market.operator.request(
        "GET", f"{market.endpoints.access}/v1/entitlements/{order['entitlement_id']}"))["status"] == "suspended"
        and e, "access to suspend the entitlement", 30)
    assert ent["suspended_by"] == ["product"]
    with pytest.raises(ApiError) as refused:
        market.buyer.issue_data_token(order["entitlement_id"])
    assert refused.value.status == 403
    assert str(refused.value.problem["type"]).endswith("/product-suspended")
    refused_query = wait_until(lambda: (r := query(market, token, rows)).status_code == 401 and r,
                               "the data service to refuse the token", 15)
    assert "no longer grants access" in refused_query.json()["detail"]


def _buy_health_as(market: Market, name: str) -> tuple[str, str]:
    """Another buyer organisation buys the L3 product and gets a data token: (org, token)."""
    buyer, org = market.party("buyer", name)
    plan = market.health["plans"][0]
    quote = buyer.quote(market.health["id"], market.health["version"], plan["id"])
    order = buyer.create_order(quote["id"], "research")
    buyer.pay_order(order["id"], "pm_card_visa")
    buyer.wait_for_order(order["id"], "fulfilled", timeout=30)
    [ent] = buyer.list_entitlements(order_id=order["id"])
    return org, str(buyer.issue_data_token(ent["id"])["access_token"])


def _victim() -> tuple[int, int, int]:
    """The only Harbour Isle person aged 30-39, sex F, in the generated demo data: (visits,
    cost, waiting days), computed from the same seeded generator the data service used."""
    import random

    from services.dataservice.demo_data import DEMO_SEED, health_rows, transit_rows
    rng = random.Random(DEMO_SEED)
    transit_rows(rng)
    rows = [r for r in health_rows(rng, 3000)
            if (r["district"], r["age_band"], r["sex"]) == ("Harbour Isle", "30-39", "F")]
    assert len({r["person_id"] for r in rows}) == 1
    return len(rows), sum(r["cost_eur"] for r in rows), sum(r["wait_days"] for r in rows)


def test_two_colluding_buyer_organisations_cannot_difference_out_a_person(
        market: Market, purchase: dict[str, Any]) -> None:
    """Buyer A asks for everyone of the victim's age band and sex; buyer B (another
    organisation, its own entitlement) for the same people by district with the victim's
    district filtered out. Before DP, A − B was the victim's exact visits, cost and waiting."""
    _served(market, purchase["token"])
    other_org, other_token = _buy_health_as(market, "Colluding Analytics")
    stats = [{"fn": "count"}, {"fn": "sum", "column": "cost_eur"}, {"fn": "sum", "column": "wait_days"}]
    victim = [{"column": "age_band", "op": "eq", "value": "30-39"}, {"column": "sex", "op": "eq", "value": "F"}]
    total = query(market, purchase["token"], {"aggregates": stats, "where": victim, "epsilon": 0.1})
    rest = query(market, other_token, {
        "select": ["district"], "group_by": ["district"], "aggregates": stats, "epsilon": 0.1,
        "where": [*victim, {"column": "district", "op": "ne", "value": "Harbour Isle"}]})
    assert total.status_code == rest.status_code == 200, (total.text, rest.text)
    recovered = [a - sum(r[i + 1] for r in rest.json()["rows"])
                 for i, a in enumerate(total.json()["rows"][0])]
    assert recovered != list(_victim())  # noise of scale ≥ 6·5000/ε on each sum: no exact hit
    spend = httpx.get(f"{market.data_url}/v1/privacy/budgets", timeout=20,
                      headers={"Authorization": f"Bearer {market.regulator.bearer()}"}).json()
    [product] = spend["items"]
    orgs = {o["organisation_id"] for o in product["by_organisation"]}
    assert {market.buyer_org, other_org} <= orgs  # one budget, spent by both
    by_org = {o["organisation_id"]: o["epsilon"] for o in product["by_organisation"]}
    assert by_org[other_org] == 0.1 and product["epsilon_spent"] == round(sum(by_org.values()), 6)


def test_the_catalog_shows_what_is_left_of_the_products_privacy_budget(
        market: Market, purchase: dict[str, Any]) -> None:
    _served(market, purchase["token"])
    assert query(market, purchase["token"], {**AGGREGATE_QUERY, "epsilon": 0.1}).status_code == 200

    def reported() -> dict[str, Any] | None:
        budget = market.buyer.get_product(market.health["id"]).get("privacy_budget")
        return budget if budget and budget["epsilon_spent"] > 0 else None
    budget = wait_until(reported, "the data service's budget report in the catalog", timeout=30)
    assert budget["epsilon_total"] == 10 and budget["source"] == "data service report"
    assert budget["epsilon_remaining"] == round(10 - budget["epsilon_spent"], 6)
