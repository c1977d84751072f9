"""Billing changes from orders: renewals, holds for non-payment, spending caps, usage
summaries (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.access.entitlement_support import Deal, deal_fixture, market_fixture, problem_type  # noqa: F401


async def change(deal: Deal, body: dict[str, Any], *, expect: int = 201) -> dict[str, Any]:
    resp = await deal.market.client.post(f"/v1/entitlements/by-order/{deal.ent['order_id']}/changes",
                                         json=body, headers=deal.market.service)
    assert resp.status_code == expect, resp.text
    return dict(resp.json())


async def test_a_renewal_moves_the_window_and_resets_the_allowance_once(deal: Deal) -> None:
    m = deal.market
    for _ in range(3):
        await m.usage(deal.ent)
    start = datetime.now(UTC)
    body = {"change_id": "renew:ord_2", "reason": "subscription renewed",
            "valid_from": start.isoformat(), "valid_until": (start + timedelta(days=31)).isoformat(),
            "query_allowance": 100}
    renewed = await change(deal, body)
    assert renewed["limits"]["query_quota"] == 103  # 3 used + a fresh 100
    assert renewed["usage"]["queries_remaining"] == 100
    assert datetime.fromisoformat(renewed["valid_until"]) > datetime.now(UTC) + timedelta(days=30)
    await m.usage(deal.ent)
    again = await change(deal, body, expect=200)  # a repeated delivery changes nothing
    assert again["limits"]["query_quota"] == 103 and again["usage"]["queries_used"] == 4
    changed = await m.events("access.entitlement.changed")
    assert len(changed) == 1 and changed[0].details["change_id"] == "renew:ord_2"


async def test_a_renewal_gives_the_period_its_privacy_budget(deal: Deal) -> None:
    await deal.market.usage(deal.ent, epsilon=0.4)
    renewed = await change(deal, {"change_id": "renew:eps", "reason": "renewed", "epsilon_allowance": 1.0})
    assert renewed["limits"]["epsilon_budget"] == 1.4
    assert abs(renewed["usage"]["epsilon_remaining"] - 1.0) < 1e-9


async def test_a_billing_hold_refuses_tokens_and_is_announced_until_it_is_lifted(deal: Deal) -> None:
    m = deal.market
    before = (await m.feed())["next_cursor"]
    held = await change(deal, {"change_id": "hold:sub_1:1", "reason": "renewal unpaid after grace",
                               "billing_hold": True})
    assert held["status"] == "suspended" and held["suspended_by"] == ["billing"]
    refused = await m.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens", headers=deal.buyer.headers)
    assert refused.status_code == 403 and problem_type(refused) == "entitlement-unpaid"
    # A regulator's reinstate lifts only the entitlement's own suspension, never the billing hold.
    lifted_by_other = await m.client.post(f"/v1/entitlements/{deal.ent['id']}/reinstate",
                                          json={"reason": "not mine"}, headers=m.operator)
    assert lifted_by_other.status_code == 409
    released = await change(deal, {"change_id": "release:sub_1:1", "reason": "paid",
                                    "billing_hold": False})
    assert released["status"] == "active"
    events = [(i["event"], i["id"]) for i in (await m.feed(before))["items"]]
    assert events == [("suspended", deal.ent["id"]), ("reinstated", deal.ent["id"])]
    assert [e.details["source"] for e in await m.events("access.entitlement.suspended")] == ["billing"]
    await m.token(deal.buyer, deal.ent["id"])


async def test_at_the_spending_cap_tokens_are_refused_with_the_cap_named(deal: Deal) -> None:
    m = deal.market
    cap = {"amount": 500, "currency": "EUR", "subscription_id": "sbs_1"}
    await change(deal, {"change_id": "cap:sbs_1:1", "reason": "spending cap set", "query_allowance": 2,
                        "spend_cap": cap})
    await m.usage(deal.ent)
    await m.usage(deal.ent)
    reached = await m.events("access.entitlement.quota_reached")
    assert len(reached) == 1 and reached[0].details["spend_cap"] == cap
    refused = await m.client.post(f"/v1/entitlements/{deal.ent['id']}/tokens", headers=deal.buyer.headers)
    assert refused.status_code == 403 and problem_type(refused) == "spend-cap-reached"
    assert "PATCH /v1/subscriptions/sbs_1" in refused.json()["detail"]


async def test_a_change_for_an_order_without_entitlement_or_a_revoked_one_is_refused(deal: Deal) -> None:
    m = deal.market
    missing = await m.client.post("/v1/entitlements/by-order/ord_unknown/changes",
                                  json={"change_id": "c1", "reason": "x", "query_allowance": 1},
                                  headers=m.service)
    assert missing.status_code == 404
    await m.client.post(f"/v1/entitlements/by-order/{deal.ent['order_id']}/revoke",
                        json={"reason": "refund"}, headers=m.service)
    revoked = await m.client.post(f"/v1/entitlements/by-order/{deal.ent['order_id']}/changes",
                                  json={"change_id": "c2", "reason": "x", "query_allowance": 1},
                                  headers=m.service)
    assert revoked.status_code == 409 and problem_type(revoked) == "entitlement-revoked"
    buyer = await m.client.post(f"/v1/entitlements/by-order/{deal.ent['order_id']}/changes",
                                json={"change_id": "c3", "reason": "x"}, headers=deal.buyer.headers)
    assert buyer.status_code == 403


async def test_a_usage_summary_counts_each_query_once_by_sequence(deal: Deal) -> None:
    m = deal.market
    for _ in range(3):
        await m.usage(deal.ent, epsilon=0.1)
    url = f"/v1/usage/summary?entitlement_id={deal.ent['id']}"
    first = (await m.client.get(url, headers=m.service)).json()
    assert first["queries"] == 3 and first["epsilon"] > 0.29
    await m.usage(deal.ent)
    nxt = (await m.client.get(f"{url}&after_seq={first['last_seq']}", headers=m.service)).json()
    assert (nxt["queries"], nxt["after_seq"]) == (1, first["last_seq"])
    assert (await m.client.get(url, headers=deal.buyer.headers)).json()["queries"] == 4
    stranger = await m.party(["buyer"])
    assert (await m.client.get(url, headers=stranger.headers)).status_code == 404
