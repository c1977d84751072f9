"""POST /v1/entitlements/batch: each item answered exactly as POST /v1/entitlements would."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from services.access.entitlement_schemas import EntitlementCreate
from services.access.entitlements import GrantRequest, grant, new_entitlement
from services.access.grant_batch import grant_many
from services.access.models import Entitlement as EntitlementRow
from services.access.runtime import AccessState
from services.orders.fulfilment import FULFILMENT_RELAY, granted_orders
from services.orders.orders import GRANT
from shared.auth import Principal
from shared.outbox import OutboxMessage
from shared.relays import Delivered, HttpDelivery
from tests.access.entitlement_support import Deal, Market, deal_fixture, market_fixture, problem_type  # noqa: F401

URL = "/v1/entitlements/batch"


def grant_body(deal: Deal, **over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "order_id": "ord_" + secrets.token_hex(6), "buyer_org": deal.buyer.org_id,
        "product_id": deal.product_id, "version": 1, "plan_id": "plan_monthly",
        "purpose": "research", "valid_from": (now - timedelta(minutes=1)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat()}
    body.update(over)
    return body


def batch(*bodies: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"idempotency_key": f"grant:{b.get('order_id', i)}", "body": b}
                      for i, b in enumerate(bodies)]}


async def post(m: Market, payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return await m.client.post(URL, json=payload, headers=m.service if headers is None else headers)


async def results(m: Market, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await post(m, batch(*bodies))
    assert resp.status_code == 200, resp.text
    out = resp.json()["results"]
    assert [r["idempotency_key"] for r in out] == [f"grant:{b.get('order_id', i)}"
                                                   for i, b in enumerate(bodies)]
    return list(out)


def kind(result: dict[str, Any]) -> str:
    return str(result["body"]["type"]).rsplit("/", 1)[-1]


async def test_only_services_may_send_a_batch(deal: Deal) -> None:
    m = deal.market
    regulator = await m.party(["regulator"])
    payload = batch(grant_body(deal))
    for party in (deal.buyer, deal.provider, regulator):
        resp = await post(m, payload, party.headers)
        assert resp.status_code == 403, resp.text
    operator = await post(m, payload, m.operator)
    assert operator.status_code == 403
    anonymous = await m.client.post(URL, json=payload)
    assert anonymous.status_code == 401
    listed = await m.client.get("/v1/entitlements", params={"order_id": payload["items"][0]["body"]["order_id"]},
                                headers=m.service)
    assert listed.json()["items"] == []


async def test_replayed_batch_grants_nothing_twice(deal: Deal) -> None:
    m = deal.market
    bodies = [grant_body(deal) for _ in range(3)]
    first = await results(m, *bodies)
    assert [r["status"] for r in first] == [201, 201, 201]
    again = await results(m, *bodies)
    assert [r["status"] for r in again] == [200, 200, 200]
    assert [r["body"]["id"] for r in again] == [r["body"]["id"] for r in first]
    for body, result in zip(bodies, first, strict=True):
        listed = (await m.client.get("/v1/entitlements", params={"order_id": body["order_id"]},
                                     headers=m.service)).json()["items"]
        assert [e["id"] for e in listed] == [result["body"]["id"]]
        assert listed[0] == result["body"]
    granted = [e.subject.id for e in await m.events("access.entitlement.granted")]
    assert granted.count(first[0]["body"]["id"]) == 1
    assert set(granted) >= {r["body"]["id"] for r in first}
    assert len(granted) == 4  # the deal's own grant and these three
    events = {e.subject.id: e for e in await m.events("access.entitlement.granted")}
    single, batched = events[deal.ent["id"]], events[first[0]["body"]["id"]]
    assert (batched.actor, batched.subject.type, set(batched.details)) == \
        (single.actor, single.subject.type, set(single.details))
    assert batched.details["order_id"] == bodies[0]["order_id"]


async def test_a_batch_mixing_new_repeat_conflict_and_invalid_items(deal: Deal) -> None:
    m = deal.market
    new = grant_body(deal)
    repeat = grant_body(deal, order_id=deal.ent["order_id"], valid_from=deal.ent["valid_from"],
                        valid_until=deal.ent["valid_until"])
    conflict = grant_body(deal, order_id=deal.ent["order_id"], purpose="marketing")
    invalid = grant_body(deal, version=0)
    unknown_plan = grant_body(deal, plan_id="plan_gold")
    twice = grant_body(deal)
    out = await results(m, new, repeat, conflict, invalid, unknown_plan, twice, dict(twice))
    assert [r["status"] for r in out] == [201, 200, 409, 422, 422, 201, 200]
    assert out[1]["body"]["id"] == deal.ent["id"]
    assert kind(out[2]) == "order-already-granted"
    assert out[2]["body"]["entitlement_id"] == deal.ent["id"]
    assert kind(out[3]) == "validation-error"
    assert out[3]["body"]["errors"][0]["field"] == "version"
    assert kind(out[4]) == "unknown-plan"
    assert out[6]["body"]["id"] == out[5]["body"]["id"]
    # The same answers as the single endpoint gives for each body.
    for body, result in zip((repeat, conflict, invalid, unknown_plan), out[1:5], strict=True):
        single = await m.client.post("/v1/entitlements", json=body, headers=m.service)
        assert single.status_code == result["status"]
        assert {k: v for k, v in single.json().items() if k != "detail"} == \
            {k: v for k, v in result["body"].items() if k != "detail"}
    # The refused items wrote nothing; the granted ones have one event each.
    for body in (invalid, unknown_plan):
        listed = await m.client.get("/v1/entitlements", params={"order_id": body["order_id"]},
                                    headers=m.service)
        assert listed.json()["items"] == []
    granted = {e.subject.id for e in await m.events("access.entitlement.granted")}
    assert granted == {deal.ent["id"], out[0]["body"]["id"], out[5]["body"]["id"]}


async def test_an_item_whose_catalog_is_down_is_503_alone(deal: Deal) -> None:
    m = deal.market
    ok = grant_body(deal)
    await results(m, ok)
    m.catalog.down = True
    out = await results(m, grant_body(deal), ok)
    assert [r["status"] for r in out] == [503, 200]
    assert kind(out[0]) == "catalog-unavailable"


async def test_more_than_a_hundred_items_is_a_422_problem_naming_the_limit(deal: Deal) -> None:
    m = deal.market
    resp = await post(m, batch(*[grant_body(deal) for _ in range(101)]))
    assert resp.status_code == 422
    assert problem_type(resp) == "validation-error"
    assert "100" in resp.text
    empty = await post(m, {"items": []})
    assert empty.status_code == 422
    listed = (await m.client.get("/v1/entitlements", headers=m.service)).json()["items"]
    assert [e["id"] for e in listed] == [deal.ent["id"]]


async def test_the_orders_relay_splits_the_real_answer_per_grant(deal: Deal) -> None:
    """The orders fulfilment relay's deliverer against this access (in process): the batch
    answer, split per message, gives each order its own entitlement; a 409 fulfils none."""
    m = deal.market
    bodies = [grant_body(deal), grant_body(deal, order_id=deal.ent["order_id"], purpose="marketing"),
              grant_body(deal)]
    messages = [OutboxMessage(n, GRANT, f"grant:{b['order_id']}", b, 0) for n, b in enumerate(bodies)]
    seen: list[Delivered] = []

    async def hook(delivered: Sequence[Delivered]) -> None:
        seen.extend(delivered)

    async def token() -> str:
        return m.service_token

    assert isinstance(FULFILMENT_RELAY.deliverer, HttpDelivery)
    deliver = FULFILMENT_RELAY.deliverer.deliverer(m.client, str(m.client.base_url), token, hook)
    await deliver(messages)
    assert [d.response.status_code for d in seen] == [201, 409, 201]
    listed = (await m.client.get("/v1/entitlements", headers=m.service)).json()["items"]
    ids = {e["order_id"]: e["id"] for e in listed}
    assert granted_orders(seen) == [(bodies[0]["order_id"], ids[bodies[0]["order_id"]]),
                                    (bodies[2]["order_id"], ids[bodies[2]["order_id"]])]


@pytest.mark.parametrize("path", ["batch", "single"])
async def test_an_order_granted_by_another_request_meanwhile_is_answered_as_a_repeat(
        deal: Deal, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """The race a grant's flush cannot win: another request grants the order after this one
    read the existing entitlements (simulated by inserting that order's row in this grant's own
    transaction from inside the catalog call). The unique order_id refuses the flush; the
    savepoint, and only it, is rolled back, and the order is answered as a repeat of the
    entitlement that won (batch: every item takes the single path then). Before the fix the
    whole transaction was gone (the rows were added outside the savepoint)."""
    m = deal.market
    raced, other = grant_body(deal), grant_body(deal)
    catalog = m.svc.state(AccessState).catalog
    real = catalog.product_version
    won: dict[str, str] = {}

    async with m.svc.db.sessionmaker() as session, session.begin():
        async def racing_version(product_id: str, version: int) -> dict[str, Any]:
            body = await real(product_id, version)
            if not won:
                req = GrantRequest(**EntitlementCreate.model_validate(raced).model_dump())
                row = new_entitlement(req, body)
                values = {c.key: getattr(row, c.key) for c in EntitlementRow.__table__.columns
                          if getattr(row, c.key) is not None}
                await session.execute(insert(EntitlementRow).values(values))
                won["id"] = row.id
            return body

        monkeypatch.setattr(catalog, "product_version", racing_version)
        requests = [GrantRequest(**EntitlementCreate.model_validate(b).model_dump()) for b in (raced, other)]
        service = Principal("svc-orders", "svc-orders", None, frozenset({"service"}), None, {})
        if path == "batch":
            outcomes = await grant_many(session, catalog, requests, service)
        else:
            outcomes = [await grant(session, catalog, r, service) for r in requests]
    assert not isinstance(outcomes[0], Exception) and not isinstance(outcomes[1], Exception)
    (first, first_created), (second, second_created) = outcomes
    assert (first.id, first_created) == (won["id"], False)
    assert second_created and second.order_id == other["order_id"]
    for body, ent_id in ((raced, won["id"]), (other, second.id)):
        listed = (await m.client.get("/v1/entitlements", params={"order_id": body["order_id"]},
                                     headers=m.service)).json()["items"]
        assert [e["id"] for e in listed] == [ent_id]
    granted = [e.subject.id for e in await m.events("access.entitlement.granted")]
    assert granted.count(second.id) == 1 and won["id"] not in granted  # the winner audited its own
