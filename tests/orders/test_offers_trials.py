"""Free trials (once per buyer organisation and product) and private offers (one named buyer
organisation sees and buys them) — issue 12."""

from __future__ import annotations

from typing import Any

from tests.orders.conftest import Harness


async def offer(h: Harness, *, buyer_org: str = "org_buyer_a", expect: int = 201,
                provider: dict[str, str] | None = None, **over: Any) -> dict[str, Any]:
    body = {"product_id": h.product["product_id"], "plan_id": "plan_monthly", "buyer_org": buyer_org,
            "terms": {"price": 3900}, "note": "consortium rate", **over}
    resp = await h.client.post("/v1/offers", json=body, headers=provider or h.provider())
    assert resp.status_code == expect, resp.text
    return dict(resp.json())


async def test_a_trial_is_free_limited_and_granted_once_per_organisation_and_product(orders: Harness) -> None:
    quote = await orders.quote("plan_monthly", mode="trial")
    assert quote["price"]["total"] == 0
    assert quote["access"] == {"unit": "day", "count": 14, "query_quota": 100, "epsilon_budget": 1.0}
    trial = await orders.order(quote["id"])
    assert trial.status_code == 201 and trial.json()["billing_reason"] == "trial"
    await orders.wait_status(trial.json()["id"], "fulfilled")
    assert orders.access.entitlements[trial.json()["id"]]["query_quota"] == 100
    again = await orders.client.post("/v1/quotes", json={**_ask(orders), "mode": "trial"}, headers=orders.buyer())
    assert again.status_code == 422
    assert again.json()["rule"] == "trial-once-per-organisation-and-product"
    other_org = await orders.quote("plan_monthly", mode="trial", buyer=orders.buyer("org_buyer_b"))
    assert other_org["price"]["total"] == 0  # another organisation has its own trial


def _ask(h: Harness, plan_id: str = "plan_monthly") -> dict[str, Any]:
    return {"product_id": h.product["product_id"], "version": h.product["version"], "plan_id": plan_id}


async def test_two_trial_orders_racing_grant_one_trial(orders: Harness) -> None:
    first = await orders.quote("plan_monthly", mode="trial")
    second = await orders.quote("plan_monthly", mode="trial")
    a, b = await orders.order(first["id"]), await orders.order(second["id"])
    assert sorted([a.status_code, b.status_code]) == [201, 422]
    assert (b if b.status_code == 422 else a).json()["rule"] == "trial-once-per-organisation-and-product"


async def test_a_plan_without_a_trial_offers_none(orders: Harness) -> None:
    resp = await orders.client.post("/v1/quotes", json={**_ask(orders, "plan_once_jpy"), "mode": "trial"},
                                    headers=orders.buyer())
    assert resp.status_code == 422 and resp.json()["rule"] == "trial-offered"


async def test_a_private_offer_is_invisible_and_unquotable_to_every_other_organisation(orders: Harness) -> None:
    made = await offer(orders)
    assert made["status"] == "open" and made["plan"]["price"] == 3900
    other = orders.buyer("org_buyer_b")
    assert (await orders.client.get(f"/v1/offers/{made['id']}", headers=other)).status_code == 404
    assert (await orders.client.get("/v1/offers", headers=other)).json()["items"] == []
    stolen = await orders.client.post("/v1/quotes", json={"offer_id": made["id"]}, headers=other)
    assert stolen.status_code == 404
    rival = await orders.client.get(f"/v1/offers/{made['id']}", headers=orders.provider("org_other"))
    assert rival.status_code == 404
    mine = await orders.client.get("/v1/offers", headers=orders.buyer())
    assert [o["id"] for o in mine.json()["items"]] == [made["id"]]


async def test_the_named_buyer_quotes_and_buys_the_offer_once(orders: Harness) -> None:
    made = await offer(orders)
    quote = await orders.client.post("/v1/quotes", json={"offer_id": made["id"]}, headers=orders.buyer())
    assert quote.status_code == 201, quote.text
    assert quote.json()["price"]["total"] == 3900 and quote.json()["offer_id"] == made["id"]
    order = await orders.order(quote.json()["id"])
    assert order.status_code == 201 and order.json()["offer_id"] == made["id"]
    used = await orders.client.get(f"/v1/offers/{made['id']}", headers=orders.provider())
    assert used.json()["status"] == "accepted" and used.json()["accepted_by"] == order.json()["id"]
    twice = await orders.client.post("/v1/quotes", json={"offer_id": made["id"]}, headers=orders.buyer())
    assert twice.status_code == 422 and twice.json()["rule"] == "offer-open"
    events = [e.action for e in await orders.events("orders.offer.") if e.subject.id == made["id"]]
    assert events == ["orders.offer.created", "orders.offer.accepted"]


async def test_an_offer_can_be_a_subscription_at_its_custom_price(orders: Harness) -> None:
    made = await offer(orders)
    sub = await orders.subscribe("plan_monthly", offer_id=made["id"])
    assert sub["status"] == "active" and sub["plan"]["price"] == 3900 and sub["offer_id"] == made["id"]


async def test_offers_to_non_buyers_or_with_unpriceable_terms_are_refused(orders: Harness) -> None:
    for buyer_org, terms, rule in (("org_nobody", {}, "offer-to-buyer"), ("org_other", {}, "offer-to-buyer"),
                                   ("org_provider", {}, "offer-to-buyer"),
                                   ("org_buyer_a", {"currency": "XXX"}, "currency-supported"),
                                   ("org_buyer_a", {"price": -5}, "plan-well-formed"),
                                   ("org_buyer_a", {"period": "week"}, "offer-terms")):
        refused = await offer(orders, buyer_org=buyer_org, terms=terms, expect=422)
        assert refused["rule"] == rule, (buyer_org, terms, refused)
    assert (await orders.client.get("/v1/offers", headers=orders.provider())).json()["items"] == []
    not_mine = await offer(orders, provider=orders.provider("org_other"), expect=404)
    assert not_mine["type"].endswith("product-not-found")


async def test_a_withdrawn_offer_cannot_be_quoted(orders: Harness) -> None:
    made = await offer(orders)
    withdrawn = await orders.client.post(f"/v1/offers/{made['id']}/withdraw", headers=orders.provider())
    assert withdrawn.json()["status"] == "withdrawn"
    quote = await orders.client.post("/v1/quotes", json={"offer_id": made["id"]}, headers=orders.buyer())
    assert quote.status_code == 422 and quote.json()["status_now"] == "withdrawn"
